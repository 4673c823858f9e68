"""lipstream for pipecat: a self-hosted lip-synced avatar as a pipecat ``FrameProcessor``.

A thin client of a lipstream server: it speaks the server's HTTP, WebSocket and
WHEP API and imports nothing of lipstream itself (pipecat and lipstream's face
tracking need different protobuf versions, so they live in separate environments).
"""

from .channel import ChannelInfo, LipstreamError, LipstreamServer
from .service import LipstreamVideoService

__all__ = ["ChannelInfo", "LipstreamError", "LipstreamServer", "LipstreamVideoService"]
