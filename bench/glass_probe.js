// Installed into a page by bench/glass_to_glass.py once the page is connected with its microphone.
// It records, on one clock, what enters the microphone and what comes back, without touching the page:
//   - an AudioWorklet with one input per track (the local mic track, then each received audio track)
//     writes the RMS of each 128-sample render block with the block's AudioContext time: all envelopes
//     share the block, so their differences need no clock mapping;
//   - requestVideoFrameCallback grabs every displayed frame of the avatar's video element, keeps the
//     gray mouth box and a 48×48 thumbnail of the face above it (what testing/live_measure.MouthMeter
//     scores), stamped with the frame's expected display time (performance.now clock);
//   - AudioContext.getOutputTimestamp pairs map the audio clock onto performance.now.
// The benchmark takes the data back in batches with take(). The file is one function expression.

// target: { mic: the local microphone track, heard: [received audio tracks], video: the avatar's element }.
async (mouthBox, upperBox, thumb, target) => {
  const ctx = new AudioContext();
  await ctx.resume();
  const worklet = `
    class Envelopes extends AudioWorkletProcessor {
      constructor() { super(); this.rows = []; }
      process(inputs) {
        const row = [currentTime];
        for (const input of inputs) {
          const ch = input[0];
          let sum = 0;
          if (ch) for (let i = 0; i < ch.length; i++) sum += ch[i] * ch[i];
          row.push(ch ? Math.sqrt(sum / ch.length) : 0);
        }
        this.rows.push(row);
        if (this.rows.length >= 64) { this.port.postMessage(this.rows); this.rows = []; }
        return true;
      }
    }
    registerProcessor("envelopes", Envelopes);`;
  await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([worklet], { type: "text/javascript" })));
  const tracks = [target.mic, ...target.heard];
  const node = new AudioWorkletNode(ctx, "envelopes", { numberOfInputs: tracks.length, numberOfOutputs: 1, outputChannelCount: [1] });
  tracks.forEach((track, i) => ctx.createMediaStreamSource(new MediaStream([track])).connect(node, 0, i));
  node.connect(ctx.destination); // a node only runs while the graph pulls it; it outputs silence

  const probe = { env: [], clock: [], frames: [], bytes: [] };
  node.port.onmessage = (ev) => {
    for (const row of ev.data) probe.env.push(row);
    const ts = ctx.getOutputTimestamp();
    probe.clock.push([ts.contextTime, ts.performanceTime / 1000]);
  };

  const video = target.video;
  const [mx0, my0, mx1, my1] = mouthBox;
  const [ux0, uy0, ux1, uy1] = upperBox;
  const canvas = new OffscreenCanvas(video.videoWidth, video.videoHeight);
  const g = canvas.getContext("2d", { willReadFrequently: true });
  const small = new OffscreenCanvas(thumb, thumb);
  const gs = small.getContext("2d", { willReadFrequently: true });
  gs.imageSmoothingQuality = "high";
  const gray = (rgba) => {
    const out = new Uint8Array(rgba.length / 4);
    for (let i = 0; i < out.length; i++) out[i] = Math.round(0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2]);
    return out;
  };
  const onFrame = (_now, meta) => {
    g.drawImage(video, 0, 0);
    gs.drawImage(canvas, ux0, uy0, ux1 - ux0, uy1 - uy0, 0, 0, thumb, thumb);
    probe.frames.push(meta.expectedDisplayTime / 1000);
    probe.bytes.push(gray(gs.getImageData(0, 0, thumb, thumb).data), gray(g.getImageData(mx0, my0, mx1 - mx0, my1 - my0).data));
    if (!probe.stopped) video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);

  // Everything recorded since the last call; pixels as base64 (thumbnail, then mouth box, per frame).
  probe.take = () => {
    const out = { env: probe.env, clock: probe.clock, frames: probe.frames };
    const parts = probe.bytes;
    probe.env = []; probe.clock = []; probe.frames = []; probe.bytes = [];
    let bin = "";
    for (const p of parts) for (let i = 0; i < p.length; i += 8192) bin += String.fromCharCode.apply(null, p.subarray(i, i + 8192));
    out.pixels = btoa(bin);
    return out;
  };
  probe.stop = async () => { probe.stopped = true; await ctx.close(); };
  window.glassProbe = probe;
  return { sampleRate: ctx.sampleRate, baseLatency: ctx.baseLatency, outputLatency: ctx.outputLatency };
}
