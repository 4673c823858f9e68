"""Uploads: stream them to disk under a size limit (live/http/upload.py) and make sure they are media.

A file is accepted only if its first bytes are a known audio/video/image
container *and* a decoder can actually open it; the client's Content-Type and
file name are never trusted.  Anything else is refused before it reaches the
queue, so the render processes only ever see plausible media.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from aiohttp import web

from live.http.upload import SavedFile, receive_multipart
from models.audio.pcm import SAMPLE_RATE
from studio.jobs import UnsupportedMedia
from studio.storage import safe_name

MAX_FILES_PER_REQUEST = 100


@dataclass(frozen=True)
class Sniffed:
    family: str       # "audio" | "video" | "image" | "container" (may hold either)
    mime: str


def sniff(head: bytes) -> Sniffed | None:
    """Identify a media container from its first bytes (≥ 16 needed)."""
    if len(head) < 12:
        return None
    if head[:4] == b"RIFF":
        sub = head[8:12]
        return {b"WAVE": Sniffed("audio", "audio/wav"), b"AVI ": Sniffed("video", "video/x-msvideo"),
                b"WEBP": Sniffed("image", "image/webp")}.get(sub)
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"M4A ", b"M4B ", b"M4P "):
            return Sniffed("audio", "audio/mp4")
        if brand == b"qt  ":
            return Sniffed("video", "video/quicktime")
        return Sniffed("container", "video/mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Sniffed("container", "video/webm")
    if head[:4] == b"OggS":
        return Sniffed("container", "audio/ogg")
    if head[:4] == b"fLaC":
        return Sniffed("audio", "audio/flac")
    if head[:3] == b"ID3":
        return Sniffed("audio", "audio/mpeg")
    if head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return Sniffed("audio", "audio/aac")          # ADTS
    if head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return Sniffed("audio", "audio/mpeg")         # MPEG audio frame sync
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("audio", "audio/aiff")
    if head[:4] == b"caff":
        return Sniffed("audio", "audio/x-caf")
    if head[:3] == b"\xff\xd8\xff":
        return Sniffed("image", "image/jpeg")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Sniffed("image", "image/png")
    if head[0] == 0x47 and len(head) > 188 and head[188] == 0x47:
        return Sniffed("video", "video/mp2t")
    if head[:4] == b"\x00\x00\x01\xba":
        return Sniffed("video", "video/mpeg")
    return None


# An upload saved to disk; ``filename`` is its safe name in its own folder.
Received = SavedFile


async def receive_files(request: web.Request, folder_for: Callable[[], Path],
                        max_bytes: int, max_files: int = MAX_FILES_PER_REQUEST) -> list[Received]:
    """Save every file part of a multipart request, each in a fresh folder ``folder_for()``.
    Over ``max_bytes`` (per file) → 413, and nothing of the request is kept."""
    def dest(filename: str) -> Path:
        return folder_for() / safe_name(filename, default="upload")

    upload = await receive_multipart(request, dest, max_bytes, max_files=max_files)
    return [replace(f, filename=f.path.name) for f in upload.files]


@dataclass(frozen=True)
class Probed:
    mime: str
    duration: float | None


def check_audio(r: Received, max_seconds: float) -> Probed:
    """An audio upload: any container with a decodable audio stream (a video's sound too)."""
    from models.audio.audio_io import AudioDecodeError, load_audio

    kind = sniff(r.head)
    if kind is None or kind.family == "image":
        raise UnsupportedMedia(f"{r.filename} is not an audio or video file")
    try:
        audio = load_audio(r.path, max_seconds=max_seconds)
    except AudioDecodeError as exc:
        raise UnsupportedMedia(f"{r.filename}: {exc}") from None
    return Probed(kind.mime, len(audio) / SAMPLE_RATE)


def check_video(r: Received) -> Probed:
    """An avatar source: a video with a decodable picture, or a photo."""
    import av
    import av.error

    kind = sniff(r.head)
    if kind is None or kind.family == "audio":
        raise UnsupportedMedia(f"{r.filename} is not a video or image file")
    try:
        with av.open(str(r.path)) as container:
            if not container.streams.video:
                raise UnsupportedMedia(f"{r.filename} has no video stream")
            stream = container.streams.video[0]
            for _frame in container.decode(stream):
                break
            else:
                raise UnsupportedMedia(f"{r.filename}: no picture could be decoded")
            duration = container.duration / 1_000_000 if container.duration else None
    except av.error.FFmpegError as exc:
        raise UnsupportedMedia(f"{r.filename}: cannot read this file ({exc.strerror or exc})") from None
    return Probed(kind.mime, None if kind.family == "image" else duration)
