"""Settings of the live server: one frozen dataclass, filled from the command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from live.rtc.signaling import IceServer
from tts.openai_tts import OpenAiTtsSettings


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    max_sessions: int = 4                # live streams (private sessions + channels): one worker process each
    max_viewers: int = 20                # WHEP viewers per channel (each costs packetising and SRTP only)
    fps: float = 25.0
    idle_timeout_s: float = 600.0        # a session nobody talks to or watches ends after this
    connect_timeout_s: float = 10.0      # an offer whose peer never connects is dropped (its slot freed) after this
    max_upload_mb: float = 200.0         # POST /avatars and /sessions/{id}/audio
    max_text_chars: int = 5000           # POST /sessions/{id}/say
    max_audio_s: float = 600.0           # longest audio file /sessions/{id}/audio accepts
    ice_servers: tuple[IceServer, ...] = ()
    piper_voice_files: tuple[Path, ...] = ()   # the operator's own piper voices ("piper:<file stem>")
    openai_tts: OpenAiTtsSettings | None = None   # an OpenAI-compatible TTS server ("openai:<voice>")
    jitter_margin_s: float = 0.015       # how long a frame may wait for late mic audio
    stats_interval_s: float = 1.0        # SSE "stats" period
    tts_threads: int = 2                 # synthesis runs in this many executor threads
    tts_onnx_threads: int | None = 1     # piper's ONNX threads per synthesis (None: all cores)
    preload_default_avatar: bool = True  # build the default avatar at start-up, not on first connect
    video_codec: str = "VP8"             # preferred codec; VP8 costs ~4x less CPU than H.264 here
    mouth_checkpoint: Path | None = None   # default: checkpoints/mouth_net.pt
    avatar_root: Path | None = None      # avatar cache; default data_dir/avatars (tests share one)
    static_dir: Path = field(default_factory=lambda: Path(__file__).resolve().parents[2] / "web")
    # Studio results retention (0 = no limit): the oldest results go first.
    keep_results: int = 0
    keep_bytes: int = 0
    keep_days: float = 0.0
    # Bearer token for the API (live/http/guard.py).  None: open on loopback, generated on any other address.
    token: str | None = None
    # The studio's render backend factory (studio.render_backend); None = this machine's process pool.
    studio_backend: Callable[[], Any] | None = None
    # serve --ray: where public channels run (live.server.remote_channels.ChannelCluster factory); None = here.
    channel_cluster: Callable[[], Any] | None = None

    def __post_init__(self) -> None:
        if not 1.0 <= self.fps <= 60.0:
            raise ValueError(f"fps must be between 1 and 60, got {self.fps}")
        if self.max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, got {self.max_sessions}")
        if not 0 <= self.port < 65536:  # 0 = any free port (tests)
            raise ValueError(f"port out of range: {self.port}")
        if min(self.keep_results, self.keep_bytes, self.keep_days) < 0:
            raise ValueError("retention limits must be 0 (none) or positive")
        if self.video_codec.upper() not in ("VP8", "H264"):
            raise ValueError(f"video_codec must be VP8 or H264, got {self.video_codec!r}")
        object.__setattr__(self, "data_dir", Path(self.data_dir))

    @property
    def avatar_dir(self) -> Path:
        return Path(self.avatar_root) if self.avatar_root is not None else self.data_dir / "avatars"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
