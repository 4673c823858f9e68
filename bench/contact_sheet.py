"""Contact sheet of the renderer at native size: source frame beside rendered frame,
100 % crops (no scaling) around the mouth, for a photo, a 720p video and a 1080p portrait.

    python -m bench.contact_sheet [--out reports/hd_contact_sheet.png]

The videos are generated (testing.hd_media: the astronaut speaking, scaled to a 280 px
face at 1280×720 and a 440 px face at 1080×1920) and prepared like uploads.  Each row:
the source frame, then the same frame rendered closed, half open and wide open.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from bench.hd_live import hd_avatar
from models.avatar.avatar import Avatar, default_avatar
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_renderer import MouthRenderer

ROOT = Path(__file__).resolve().parent.parent
CROP = 360   # px of the frame shown per tile, unscaled
SHAPES = (("closed", MouthShape(0.0)), ("open 0.5", MouthShape(0.5)), ("open 1.0", MouthShape(1.0, 0.3)))


def _crop(image: np.ndarray, centre: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x0 = int(np.clip(centre[0] - CROP / 2, 0, max(0, w - CROP)))
    y0 = int(np.clip(centre[1] - CROP / 2, 0, max(0, h - CROP)))
    tile = np.zeros((CROP, CROP, 3), np.uint8)
    part = image[y0:y0 + CROP, x0:x0 + CROP]
    tile[:part.shape[0], :part.shape[1]] = part
    return tile


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    for colour, thick in (((255, 255, 255), 3), ((20, 20, 20), 1)):
        cv2.putText(tile, text, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, colour, thick)
    return tile


def row(label: str, avatar: Avatar) -> np.ndarray:
    i = int(np.argmin(np.where(avatar.face_found, avatar.mouth_features[:, 0], np.inf)))
    lm = avatar.landmarks[i]
    centre = lm[[13, 14, 61, 291]].mean(axis=0)
    size = f"{avatar.info.width}x{avatar.info.height}"
    tiles = [_label(_crop(avatar.frame(i), centre), f"{label} {size}: source")]
    renderer = MouthRenderer(avatar)
    for name, shape in SHAPES:
        renderer.reset()
        tiles.append(_label(_crop(renderer.render(i, shape), centre), f"rendered {name}"))
    return np.hstack(tiles)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "hd_contact_sheet.png")
    ap.add_argument("--cache", type=Path, default=ROOT / "data" / "bench_hd")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    rows = [
        row("photo", default_avatar(ROOT / "data" / "avatars")),
        row("720p video", hd_avatar(args.cache, (1280, 720), 280.0, 4.0)),
        row("1080p portrait", hd_avatar(args.cache, (1080, 1920), 440.0, 4.0)),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))
    print(f"contact sheet: {args.out}")


if __name__ == "__main__":
    main()
