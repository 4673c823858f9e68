"""Broadcast outputs: a channel's encoded frames, re-muxed (never re-encoded) to RTMP/RTMPS ingests."""
