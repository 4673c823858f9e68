#!/usr/bin/env python3
"""lipstream command line.

    python run_live.py                      serve the live page + API on 127.0.0.1:8080
    python run_live.py render --audio A.wav [--avatar FILE_OR_ID] --out OUT.mp4
    python run_live.py batch --audio A.wav V1.mp4 V2.mp4 ... --out DIR [--zip]
    python run_live.py avatar add FILE [--name NAME]   |   python run_live.py avatar list
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path("data")


def _serve(args: argparse.Namespace) -> int:
    from live.server.app import StartupError, serve

    try:
        serve(server_config(args))
    except StartupError as exc:   # a read-only or full data dir, a busy port: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def server_config(args: argparse.Namespace):
    from live.server.config import ServerConfig

    return ServerConfig(host=args.host, port=args.port, data_dir=args.data_dir, max_sessions=args.max_sessions,
                        keep_results=args.keep_results, keep_bytes=int(args.keep_gb * 1e9),
                        keep_days=args.keep_days, token=args.token or os.environ.get("LIPSTREAM_TOKEN") or None,
                        openai_tts=openai_tts_settings(args),
                        studio_backend=ray_studio_backend(args.ray) if args.ray else None,
                        channel_cluster=ray_channel_cluster(args.ray, args.ray_channel_cpus) if args.ray else None)


def openai_tts_settings(args: argparse.Namespace):
    """The --openai-tts-* flags (the key also from LIPSTREAM_OPENAI_TTS_KEY); None without a URL."""
    from tts.openai_tts import OpenAiTtsSettings, parse_voices

    if not args.openai_tts_url:
        return None
    key = args.openai_tts_key or os.environ.get("LIPSTREAM_OPENAI_TTS_KEY") or None
    return OpenAiTtsSettings(args.openai_tts_url, model=args.openai_tts_model, key=key,
                             voices=parse_voices(args.openai_tts_voices), response_format=args.openai_tts_format,
                             timeout_s=args.openai_tts_timeout)


def _avatar_cache(data_dir: Path) -> Path:
    return data_dir / "avatars"


def _resolve_avatar(ref: str | None, data_dir: Path):
    """An avatar from a file path (prepared on first use), a cached id, or the default."""
    from tqdm import tqdm

    from models.avatar.avatar import default_avatar, load_avatar, prepare_avatar

    cache = _avatar_cache(data_dir)
    if ref is None or ref == "default":
        return default_avatar(cache)
    path = Path(ref)
    if not path.is_file() and ("/" in ref or path.suffix):
        raise FileNotFoundError(f"avatar file not found: {ref}")
    if path.is_file():
        with tqdm(total=100, desc=f"preparing {path.name}", unit="%") as bar:
            def progress(fraction: float) -> None:
                bar.update(int(fraction * 100) - bar.n)
            info = prepare_avatar(path, cache, progress=progress)
        for warning in info.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return load_avatar(info.avatar_id, cache)
    return load_avatar(ref, cache)


def _render(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from live.engine.offline_render import analyze_audio, render_video
    from models.audio.audio_io import load_audio
    from models.mouth.mouth_model import MouthPredictor

    audio = load_audio(args.audio)
    avatar = _resolve_avatar(args.avatar, args.data_dir)
    predictor = MouthPredictor.load(args.checkpoint)
    track = analyze_audio(audio, predictor, fps=args.fps)
    with tqdm(total=track.n_frames, desc="rendering", unit="frame") as bar:
        stats = render_video(avatar, track, audio, args.out, progress=lambda done, _n: bar.update(done - bar.n))
    print(f"wrote {stats.out_path}: {stats.frames} frames, {stats.audio_seconds:.1f} s of audio "
          f"in {stats.wall_seconds:.1f} s ({stats.speed:.1f}x real time)")
    return 0


def _batch(argv: list[str]) -> int:
    from studio.cli import batch_main

    return batch_main(argv, ray_backend=ray_studio_backend)


def ray_studio_backend(address: str):
    """``--ray ADDRESS``: join the cluster; the studio's backend factory (Ray is imported only here)."""
    try:
        from scale.ray_cluster import ClusterUnavailable
        from scale.ray_studio import backend_factory
    except ImportError as exc:   # a message, not a traceback (main prints ValueErrors)
        raise ValueError(f"--ray: {exc} (install it: pip install 'lipstream[ray]')") from None
    try:
        return backend_factory(address)
    except ClusterUnavailable as exc:
        raise ValueError(f"--ray: {exc}") from None


def ray_channel_cluster(address: str, cpus: float):
    """``serve --ray ADDRESS``: public channels run in Ray actors on the cluster's nodes."""
    from live.server.channel_host import ChannelHost

    if not cpus > 0:
        raise ValueError(f"--ray-channel-cpus must be more than 0, got {cpus:g}")
    try:
        from scale.ray_channels import cluster_factory
        from scale.ray_cluster import ClusterUnavailable
    except ImportError as exc:
        raise ValueError(f"--ray: {exc} (install it: pip install 'lipstream[ray]')") from None
    try:
        return cluster_factory(address, ChannelHost, cpus)
    except ClusterUnavailable as exc:
        raise ValueError(f"--ray: {exc}") from None


def _avatar(args: argparse.Namespace) -> int:
    from models.avatar.avatar import list_avatars

    if args.avatar_cmd == "add":
        avatar = _resolve_avatar(str(args.file), args.data_dir)
        print(f"{avatar.info.avatar_id}\t{avatar.info.kind}\t{avatar.info.width}x{avatar.info.height}\t"
              f"{avatar.info.n_frames} frames")
    else:
        for info in list_avatars(_avatar_cache(args.data_dir)):
            print(f"{info.avatar_id}\t{info.name}\t{info.kind}\t{info.width}x{info.height}\t{info.n_frames} frames")
    return 0


def _non_negative(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run_live.py", description="lipstream: real-time lip-sync avatars")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where avatars, results and logs live")
    parser.add_argument("--max-side", type=int, default=None, metavar="PX",
                        help="new avatars keep their size up to PX on the long side (default 1920, "
                             "or LIPSTREAM_MAX_SIDE); give it before the command")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the live server (the default)")
    for p in (parser, serve):
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8080)
        p.add_argument("--max-sessions", type=int, default=4)
        p.add_argument("--keep-results", type=_non_negative(int), default=0, metavar="N",
                       help="studio: keep at most N results, deleting the oldest (default 0: no limit)")
        p.add_argument("--keep-gb", type=_non_negative(float), default=0.0, metavar="GB",
                       help="studio: keep results under this many GB (default 0: no limit)")
        p.add_argument("--keep-days", type=_non_negative(float), default=0.0, metavar="DAYS",
                       help="studio: delete results older than this (default 0: keep)")
        p.add_argument("--token", default=None,
                       help="API token (or LIPSTREAM_TOKEN). Required on a non-loopback --host: generated and "
                            "printed if not given. Given on loopback, it is enforced there too")
        p.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="render studio batches and run live channels on the Ray cluster at ADDRESS (host:port "
                            "of its head, or 'auto'); this machine must be a node of it (pip install 'lipstream[ray]')")
        p.add_argument("--ray-channel-cpus", type=float, default=0.5, metavar="N",
                       help="with --ray: the CPUs one live channel reserves on a node (default 0.5: "
                            "about two 512 px streams per core)")
        p.add_argument("--openai-tts-url", default=None, metavar="URL",
                       help="an OpenAI-compatible TTS server (POST URL/v1/audio/speech); adds voices openai:<voice>")
        p.add_argument("--openai-tts-model", default="tts-1", metavar="M", help="its model (default tts-1)")
        p.add_argument("--openai-tts-key", default=None, metavar="K",
                       help="its API key (better: LIPSTREAM_OPENAI_TTS_KEY, which ps does not show)")
        p.add_argument("--openai-tts-voices", default=None, metavar="A,B",
                       help="voices to list (default: the server's GET /v1/audio/voices, else OpenAI's names)")
        p.add_argument("--openai-tts-format", choices=("pcm", "wav"), default="pcm",
                       help="response_format to ask for (default pcm: 24 kHz s16le, streamed)")
        p.add_argument("--openai-tts-timeout", type=float, default=30.0, metavar="S",
                       help="seconds to connect, to the first byte and between reads (default 30)")

    render = sub.add_parser("render", help="render an audio file onto an avatar as an MP4")
    render.add_argument("--audio", required=True, type=Path)
    render.add_argument("--avatar", default=None, help="a video/photo file or a prepared avatar id (default: the built-in avatar)")
    render.add_argument("--out", required=True, type=Path)
    render.add_argument("--fps", type=float, default=25.0)
    render.add_argument("--checkpoint", type=Path, default=None, help="mouth model weights (default: checkpoints/mouth_net.pt)")

    sub.add_parser("batch", help="render one audio onto many videos (see: run_live.py batch --help)", add_help=False)

    avatar = sub.add_parser("avatar", help="prepare or list avatars")
    avatar_sub = avatar.add_subparsers(dest="avatar_cmd", required=True)
    add = avatar_sub.add_parser("add", help="prepare a video or photo")
    add.add_argument("file", type=Path)
    avatar_sub.add_parser("list", help="list prepared avatars")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "batch":
        return _batch(argv[1:])
    args = build_parser().parse_args(argv)
    if args.max_side is not None:
        # The environment carries it to the server's preparation processes and the studio's workers.
        lo, hi = 128, 4096
        if not lo <= args.max_side <= hi:
            print(f"error: --max-side must be between {lo} and {hi} px", file=sys.stderr)
            return 2
        os.environ["LIPSTREAM_MAX_SIDE"] = str(args.max_side)
    handlers = {None: _serve, "serve": _serve, "render": _render, "avatar": _avatar}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, KeyError) as exc:
        # Bad input (unreadable audio, no face, unknown avatar…) is a message, not a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
