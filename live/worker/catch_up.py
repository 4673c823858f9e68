"""Catch-up: what a live session does when the machine cannot draw every frame in time.

A frame that is late stays late: every later frame queues behind it, and the
viewer's latency would grow for the rest of the session.  So when the frame pump
finds itself more than ``behind_frames`` frame periods behind the media clock, it
asks the worker to *advance* every other frame without drawing or encoding it
(``RenderRequest.image = False``).  The worker still runs the audio, features and
mouth model for such a frame, so the sound stays continuous and in sync and the
mouth state stays current; only the picture repeats (``LipSyncSession.next_frame``
with ``draw=False``).  The picture keeps at least half its rate, and the pump is
back on time after a few frames.  Drawn and skipped frames both count as sent.

This is a policy, separate from timing and profiling: ``LiveSession`` owns one per
stream and asks it once per frame.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CatchUpPolicy:
    behind_frames: float = 2.0     # skip only when more than this many frame periods late
    skipped: int = 0               # frames advanced without a picture so far
    _skipped_last: bool = False

    def draw(self, behind_s: float, fps: float) -> bool:
        """Whether the next frame gets a picture, given how far (s) the pump is behind its clock.

        Never two skips in a row: a viewer sees at least every other picture.
        """
        draw = behind_s <= self.behind_frames / fps or self._skipped_last
        self._skipped_last = not draw
        if not draw:
            self.skipped += 1
        return draw
