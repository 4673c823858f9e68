"""Just enough H.264 Annex-B reading to tell a keyframe (IDR with in-band SPS/PPS) from the bytes."""

from __future__ import annotations

import re

NAL_IDR, NAL_SPS, NAL_PPS = 5, 7, 8
_START_CODE = re.compile(b"\x00\x00\x01")


def nal_types(access_unit: bytes) -> list[int]:
    """The nal_unit_type of each NAL unit in an Annex-B access unit, in order."""
    return [access_unit[m.end()] & 0x1F for m in _START_CODE.finditer(access_unit) if m.end() < len(access_unit)]


def is_keyframe(access_unit: bytes) -> bool:
    """An IDR picture that carries its SPS and PPS: a receiver can start decoding here."""
    types = set(nal_types(access_unit))
    return {NAL_IDR, NAL_SPS, NAL_PPS} <= types
