// A WHEP client (RFC 9725): POST an SDP offer, get the SDP answer and the viewer's resource URL
// (Location), DELETE that URL to leave. Shared by the On-air console and the broadcast page.
"use strict";

(() => {
  // Host candidates are enough on a LAN, and aiortc does not take trickled candidates: wait for
  // gathering to finish, but never longer than this.
  const ICE_GATHER_MS = 2500;

  function gathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        if (pc.iceGatheringState !== "complete") return;
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, ICE_GATHER_MS);
    });
  }

  class WhepError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;   // HTTP status; 0: the server could not be reached
    }
  }

  class WhepClient {
    // url: the WHEP endpoint (with ?key=… for viewers); headers: extra request headers (the token);
    // micTrack: undefined → receive only; null or a track → a sendrecv audio transceiver (push-to-talk).
    constructor({ url, headers = {}, iceServers = [], micTrack = undefined, onTrack = () => {} }) {
      this.url = new URL(url, window.location.href).href;
      this.headers = headers;
      this.pc = new RTCPeerConnection({ iceServers });
      this.resource = null;
      this.audioSender = null;
      this.pc.addEventListener("track", (ev) => onTrack(ev));
      this.pc.addTransceiver("video", { direction: "recvonly" });
      if (micTrack === undefined) {
        this.pc.addTransceiver("audio", { direction: "recvonly" });
      } else {
        this.audioSender = this.pc.addTransceiver("audio", { direction: "sendrecv" }).sender;
        if (micTrack) this.audioSender.replaceTrack(micTrack);
      }
    }

    async connect() {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      await gathered(this.pc);
      let resp;
      try {
        resp = await fetch(this.url, {
          method: "POST",
          headers: { ...this.headers, "Content-Type": "application/sdp" },
          body: this.pc.localDescription.sdp,
        });
      } catch (err) {
        throw new WhepError(0, err.message);
      }
      const text = await resp.text();
      if (resp.status !== 201 && resp.status !== 200) {
        let reason = text;
        try { reason = JSON.parse(text).error || text; } catch (_) { /* not JSON */ }
        throw new WhepError(resp.status, reason || `HTTP ${resp.status}`);
      }
      const location = resp.headers.get("Location");
      this.resource = location ? new URL(location, this.url).href : null;
      await this.pc.setRemoteDescription({ type: "answer", sdp: text });
    }

    // Leave: the server frees the viewer at once rather than when ICE times out.
    close() {
      const resource = this.resource;
      this.resource = null;
      this.pc.close();
      if (resource) {
        fetch(resource, { method: "DELETE", headers: this.headers, keepalive: true }).catch(() => {});
      }
    }
  }

  window.lipstreamWhep = { WhepClient, WhepError };
})();
