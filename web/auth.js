// The API token, when the server requires one (any non-loopback address; see live/http/guard.py).
// The server prints a link "http://host:port/#token=…". The page takes the token from the address
// once (#token= or ?token=), keeps it in localStorage, and removes it from the address bar so it does
// not stay in the history or get shared by copy-paste. Every fetch/XHR then sends
// "Authorization: Bearer …". Requests the browser makes by itself (EventSource, <img>, <video>, a
// download link) cannot carry a header, so their URLs get "?token=…": the server accepts that on
// GET only, for those routes only, and leaves query strings out of its access log.
"use strict";

(() => {
  const KEY = "lipstream.token";
  const url = new URL(window.location.href);
  const fromHash = new URLSearchParams(url.hash.slice(1)).get("token");
  const fromQuery = url.searchParams.get("token");
  const given = fromHash || fromQuery;
  if (given) {
    try { localStorage.setItem(KEY, given); } catch (_) { /* storage disabled: kept for this page only */ }
    url.searchParams.delete("token");
    url.hash = "";
    history.replaceState(null, "", url.pathname + url.search);
  }
  let token = given;
  if (!token) { try { token = localStorage.getItem(KEY); } catch (_) { token = null; } }

  window.lipstreamAuth = {
    get token() { return token; },
    // Headers for fetch/XHR.
    headers(extra = {}) {
      return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
    },
    // A URL the browser loads by itself (GET only).
    url(path) {
      if (!token || !path) return path;
      return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
    },
    // A 401: the stored token is stale (the server restarted with a new one).
    forget() {
      try { localStorage.removeItem(KEY); } catch (_) { /* nothing stored */ }
      token = null;
    },
  };
})();
