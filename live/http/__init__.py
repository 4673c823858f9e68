"""HTTP pieces shared by the live server and the studio: one of each.

    errors   every failure leaves as JSON ``{"error": ...}``; a bug is a bare 500 (no exception text)
    guard    who may call what: bearer token, Origin, request content types, declared body size
    body     JSON bodies under a small limit, and bounded numbers from JSON and query strings
    upload   uploads streamed to disk under a size limit (multipart or a raw body)
    sse      the Server-Sent Events writer

``live.server`` and ``studio`` both import this package; it imports neither of
them (tests/test_layout.py), nor anything of the engine, so it stays plain aiohttp.
"""
