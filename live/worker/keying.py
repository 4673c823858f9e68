"""Background keying inside a worker: the avatar on a flat colour, for a chroma-key source.

The matte (``models.avatar.matte``) is read from the avatar's cache, or computed
once -- a few ms per source frame, seconds for a long video -- in a thread, so a
viewer asking for ``?bg=green`` never stalls the frames everyone else is
watching.  Until it is ready that viewer gets the avatar as recorded.
"""

from __future__ import annotations

import logging
import threading
from functools import lru_cache

import numpy as np

from models.avatar.avatar import Avatar

log = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _bgr(colour: str) -> tuple[int, int, int]:
    from models.avatar.matte import parse_key_colour

    return parse_key_colour(colour)


class BackgroundKeyer:
    def __init__(self, avatar: Avatar) -> None:
        self._avatar = avatar
        self._matte = None
        self._thread: threading.Thread | None = None
        self.failed: str | None = None

    def __call__(self, image: np.ndarray, source_index: int, colour: str) -> np.ndarray:
        matte = self._matte
        if matte is None or source_index < 0:
            self._start()
            return image
        return matte.key_frame(image, source_index, _bgr(colour))

    @property
    def ready(self) -> bool:
        return self._matte is not None

    def _start(self) -> None:
        if self._thread is None and self.failed is None:
            self._thread = threading.Thread(target=self._compute, name="matte", daemon=True)
            self._thread.start()

    def _compute(self) -> None:
        from models.avatar.matte import AvatarMatte

        try:
            self._matte = AvatarMatte.for_avatar(self._avatar)
        except Exception as e:   # the stream goes on unkeyed; the reason is logged once
            self.failed = f"{type(e).__name__}: {e}"
            log.exception("background matte of avatar %s failed", self._avatar.info.avatar_id)
