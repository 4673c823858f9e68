"""Avatar frame + mouth shape → the picture a viewer sees.

The compositor walks the avatar's idle loop (a ping-pong order, so there is no
seam) and hands each loop frame with its mouth shape to the renderer.  The loop lies
inside one shot of the source (models/avatar/shots.py), and a loop frame without a
usable face comes back from the renderer exactly as stored: no mouth is pasted there.

What comes out is a ``models.render.picture.Picture``: the source frame plus the
mouth region the renderer changed.  Encoders take its I420 (the source frame's
conversion is kept per source frame, only the mouth region is converted anew); a
consumer that needs BGR gets the full frame from ``Picture.bgr()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from models.avatar.avatar import Avatar
from models.mouth.mouth_shape import MouthShape
from models.render.mouth_renderer import MouthRenderer
from models.render.picture import Picture, SourceFrames


@dataclass
class Compositor:
    avatar: Avatar
    renderer: MouthRenderer = field(init=False)
    frames: SourceFrames = field(init=False)

    def __post_init__(self) -> None:
        self.renderer = MouthRenderer(self.avatar)
        self.frames = SourceFrames(self.avatar)

    def loop_index(self, frame: int) -> int:
        order = self.avatar.loop_order
        return int(order[frame % len(order)])

    def source_index(self, frame: int) -> int:
        """The avatar frame output frame ``frame`` is drawn on (for its alpha matte)."""
        return self.loop_index(frame)

    def compose(self, frame: int, shape: MouthShape) -> Picture:
        i = self.loop_index(frame)
        return Picture(self.frames, i, self.renderer.render_region(i, shape))

    def reset(self) -> None:
        self.renderer.reset()

    @property
    def size(self) -> tuple[int, int]:
        return self.avatar.info.width, self.avatar.info.height
