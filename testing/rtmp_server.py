"""A real RTMP ingest for tests and benchmarks: Debian's nginx with libnginx-mod-rtmp.

``RtmpServer`` runs nginx in the foreground (``daemon off``, one process) from a
config in a temporary directory, on 127.0.0.1 and a free port, with one
``application live { live on; }``.  It can be killed, paused (SIGSTOP: the
kernel still accepts connections but nobody answers, like a hung ingest) and
restarted on the same port, for outage tests.  ``TlsFront`` puts TLS in front of
it for ``rtmps://``.  ``pull`` plays a stream back with PyAV and decodes what a
viewer of the platform would get.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)


def unavailable_reason() -> str | None:
    """Why no RTMP ingest can run here (None when it can): the Debian packages to install."""
    if nginx_binary() is None or not RTMP_MODULE.exists():
        return "needs Debian nginx and libnginx-mod-rtmp (scripts/setup.sh test installs them)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_CONFIG = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
        }}
    }}
}}
"""


class RtmpServer:
    def __init__(self, port: int | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self.port = port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="lipstream-rtmp-")
        self.root = Path(self._tmp.name)
        (self.root / "nginx.conf").write_text(_CONFIG.format(module=RTMP_MODULE, root=self.root, port=self.port))
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, key: str, app: str = "live") -> str:
        return f"rtmp://127.0.0.1:{self.port}/{app}/{key}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        """Start nginx and return once it accepts connections."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [nginx_binary() or "nginx", "-p", str(self.root), "-e", str(self.root / "error.log"),
             "-c", str(self.root / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"nginx exited with {self._proc.returncode}: {err.strip()} "
                                   f"{self.error_log()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"nginx did not accept connections on port {self.port} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: every connection drops at once, as when an ingest crashes."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGCONT)   # a paused process must be able to die
                self._proc.kill()
            self._proc.wait(timeout=10)
            if self._proc.stderr:
                self._proc.stderr.close()
            self._proc = None

    def restart(self, timeout: float = 15.0) -> None:
        self.kill()
        self.start(timeout)

    def pause(self) -> None:
        """SIGSTOP: connections are still accepted by the kernel but never answered."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def error_log(self) -> str:
        try:
            return (self.root / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.kill()
        self._tmp.cleanup()

    def __enter__(self) -> RtmpServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------
# playing a stream back


@dataclass
class PulledStream:
    """What a viewer received: codecs, size, and decoded timelines (receiver timestamps in seconds)."""

    video_codec: str | None = None
    audio_codec: str | None = None
    width: int = 0
    height: int = 0
    audio_rate: int = 0
    audio_channels: int = 0
    video_times: list[float] = field(default_factory=list)
    video_luma: list[float] = field(default_factory=list)
    keyframe_times: list[float] = field(default_factory=list)
    audio_chunks: list[np.ndarray] = field(default_factory=list)
    audio_start: float | None = None
    first_picture_at: float | None = None   # time.monotonic() when the first picture decoded

    @property
    def audio(self) -> np.ndarray:
        """Mono float32 audio from ``audio_start`` on."""
        return np.concatenate(self.audio_chunks) if self.audio_chunks else np.zeros(0, np.float32)

    def frame_interval_s(self) -> float:
        """Median time between consecutive video frames."""
        return float(np.median(np.diff(self.video_times))) if len(self.video_times) > 1 else 0.0


def open_stream(url: str, timeout: float = 20.0) -> av.container.InputContainer:
    """Open an RTMP stream for playing, retrying while the publisher is not there yet."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            # (FFmpeg's default probing: a shorter analyzeduration can end before the late player's first
            # keyframe arrives, and the stream then has no video at all)
            return av.open(url, options={"rtmp_live": "live", "rtmp_buffer": "100"},
                           timeout=(max(1.0, min(5.0, left)), 5.0))
        except (av.error.FFmpegError, OSError):
            # nginx-rtmp answers a player that comes before the publisher with an I/O error
            if time.monotonic() + 0.3 >= deadline:
                raise
            time.sleep(0.3)


def pull(url: str, seconds: float, *, open_timeout: float = 20.0) -> PulledStream:
    """Play ``url`` and decode ``seconds`` of stream time from its first picture on."""
    out = PulledStream()
    with open_stream(url, open_timeout) as container:
        v = container.streams.video[0] if container.streams.video else None
        a = container.streams.audio[0] if container.streams.audio else None
        if v is not None:
            out.video_codec, out.width, out.height = v.codec_context.name, v.codec_context.width, v.codec_context.height
        if a is not None:
            out.audio_codec, out.audio_rate = a.codec_context.name, a.codec_context.sample_rate
            out.audio_channels = a.codec_context.channels
        streams = [s for s in (v, a) if s is not None]
        first_ts: float | None = None
        wall_deadline = time.monotonic() + seconds + 15.0
        for packet in container.demux(streams):
            if packet.pts is None:
                continue
            ts = float(packet.pts * packet.time_base)
            if first_ts is None and (v is None or out.video_times):
                first_ts = ts    # the window opens at the first picture (a late player waits for a keyframe)
            if (first_ts is not None and ts - first_ts > seconds) or time.monotonic() > wall_deadline:
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue   # joined mid-GOP: pictures before the first keyframe do not decode
            if packet.stream is v:
                if packet.is_keyframe:
                    out.keyframe_times.append(ts)
                for frame in frames:
                    if out.first_picture_at is None:
                        out.first_picture_at = time.monotonic()
                    out.video_times.append(float(frame.pts * frame.time_base))
                    out.video_luma.append(float(frame.to_ndarray(format="gray").mean()))
            else:
                for frame in frames:
                    samples = frame.to_ndarray()
                    mono = samples.mean(axis=0) if samples.ndim == 2 and frame.format.is_planar else (
                        samples.reshape(-1, frame.layout.nb_channels).mean(axis=1))
                    if out.audio_start is None:
                        out.audio_start = float(frame.pts * frame.time_base)
                    out.audio_chunks.append(mono.astype(np.float32))
    return out


@dataclass
class PlayedStream:
    """What a player saw and heard: one value per picture (``frame_fn`` of its gray image), the sound."""

    video_codec: str
    audio_codec: str
    size: tuple[int, int]
    audio_rate: int
    times: np.ndarray                 # picture timestamps, s
    values: list                      # frame_fn(gray picture) per picture
    audio: np.ndarray                 # mono float32
    audio_start: float | None         # timestamp of audio[0], s


def play(url: str, seconds: float, frame_fn=lambda gray: gray, *, open_timeout: float = 30.0) -> PlayedStream:
    """Play ``url`` from its first keyframe for ``seconds`` of stream time (a player joining a live stream)."""
    values, times, audio, audio_start = [], [], [], None
    with open_stream(url, open_timeout) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        first = None
        for packet in container.demux(v, a):
            if packet.pts is None:
                continue
            ts = float(packet.pts * packet.time_base)
            if first is None and packet.stream is v and packet.is_keyframe:
                first = ts
            if first is None:
                continue
            if ts - first > seconds:
                break
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                continue
            for frame in frames:
                t = float(frame.pts * frame.time_base)
                if packet.stream is v:
                    times.append(t)
                    values.append(frame_fn(frame.to_ndarray(format="gray")))
                else:
                    pcm = frame.to_ndarray()
                    mono = pcm.mean(axis=0) if frame.format.is_planar else pcm.reshape(-1, frame.layout.nb_channels).mean(axis=1)
                    audio_start = t if audio_start is None else audio_start
                    audio.append(mono.astype(np.float32))
        return PlayedStream(v.codec_context.name, a.codec_context.name, (v.codec_context.width, v.codec_context.height),
                            a.codec_context.sample_rate, np.array(times), values,
                            np.concatenate(audio) if audio else np.zeros(0, np.float32), audio_start)


# ---------------------------------------------------------------------------
# RTMPS: TLS in front of the ingest, as platforms that want rtmps:// run it


class TlsFront:
    """A TLS-terminating proxy (self-signed certificate) in front of ``server``: ``rtmps://`` URLs.

    It runs its own event loop in a thread, so blocking and asyncio callers can both use it.
    """

    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.port = free_port()
        cert, key = server.root / "tls.crt", server.root / "tls.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        self._tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._tls.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rtmps-front", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TLS front did not start")

    def url(self, key: str, app: str = "live") -> str:
        return f"rtmps://127.0.0.1:{self.port}/{app}/{key}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        listener = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self._tls))
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            listener.close()
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_relay(reader, up_writer), _relay(up_reader, writer))


async def _relay(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()
