// H.264 over a WebSocket into WebCodecs' VideoDecoder, drawn on a canvas as each frame decodes.
// The server's messages (framebus/web/_h264.py): a 28-byte little-endian header (version,
// flags, width, height, codec length, capture time, seq, index), the codec string, an Annex-B
// access unit. The page sends "key" when its decoder lost its footing.
"use strict";

// Chunks waiting to be decoded beyond which the player drops to the next keyframe: a slow
// machine shows a fresh picture rather than a backlog. For a second after a keyframe starts
// the decoder the bound is CATCH_UP_QUEUE: a newcomer gets the group of pictures from the last
// keyframe at once, and decodes it as fast as it can.
const MAX_DECODE_QUEUE = 8;
const CATCH_UP_QUEUE = 700; // (the server caches at most 600 frames of a group of pictures)
const CATCH_UP_MS = 1000;
// Messages kept while the browser checks a new configuration (beyond: wait for a keyframe).
const MAX_HELD = 700;

async function h264Supported() {
  if (!window.isSecureContext || !("VideoDecoder" in window)) return false;
  try {
    const { supported } = await VideoDecoder.isConfigSupported({ codec: "avc1.42E01E" });
    return supported === true;
  } catch (err) {
    return false;
  }
}

class H264Player {
  // canvas: where frames are drawn; url: the stream's WebSocket URL; events: callbacks
  // onPicture(captureTime), onUnsupported(reason), onEnd(code).
  constructor(canvas, url, events) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.url = url;
    this.events = events;
    this.decoder = null;
    this.config = "";
    this.waitKey = true;
    this.captured = new Map(); // chunk timestamp -> capture time, for frames being decoded
    this.index = null; // of the last access unit received
    this.checking = false; // a configuration is being checked
    this.started = 0; // when the decoder started at a keyframe (performance.now())
    this.held = []; // messages that came meanwhile (the keyframe first)
    this.passthrough = false; // the camera's own H.264, not encoded by framebus
    this.frames = 0;
    this.stopped = false;
    this.open();
  }

  open() {
    const ws = new WebSocket(this.url);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => { if (ev.data instanceof ArrayBuffer) this.message(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws && !this.stopped) this.events.onEnd(ev.code); };
    this.ws = ws;
  }

  message(buf) {
    if (buf.byteLength < 28) return;
    const view = new DataView(buf);
    if (view.getUint8(0) !== 1) return;
    const key = (view.getUint8(1) & 1) === 1;
    this.passthrough = (view.getUint8(1) & 2) === 2;
    const width = view.getUint16(2, true);
    const height = view.getUint16(4, true);
    const n = view.getUint8(6);
    const captured = view.getFloat64(8, true);
    const index = view.getUint32(24, true);
    if (28 + n > buf.byteLength) return;
    const codec = String.fromCharCode(...new Uint8Array(buf, 28, n));
    const data = new Uint8Array(buf, 28 + n);
    const gap = this.index !== null && index !== ((this.index + 1) >>> 0);
    this.index = index;
    if (gap && !key) {
      this.restart(); // a frame never came: what follows cannot decode until a keyframe
      return;
    }
    if (this.checking) { // frames that come while a configuration is checked wait for it
      if (this.held.length < MAX_HELD) {
        this.held.push([buf, captured]);
      } else { // too many: start again at a keyframe, and ask for one
        this.held = [];
        if (this.ws.readyState === WebSocket.OPEN) this.ws.send("key");
      }
      return;
    }
    if (key) {
      const config = `${codec} ${width}x${height}`;
      if (!this.decoder || this.decoder.state === "closed" || config !== this.config) {
        this.held = [[buf, captured]];
        this.configure(codec, width, height, config);
        return;
      }
      this.waitKey = false;
    }
    if (this.waitKey || !this.decoder || this.decoder.state !== "configured") return;
    if (key && !this.started) this.started = performance.now();
    const catchingUp = performance.now() - this.started < CATCH_UP_MS;
    if (this.decoder.decodeQueueSize > (catchingUp ? CATCH_UP_QUEUE : MAX_DECODE_QUEUE)) {
      this.restart(); // this machine decodes slower than the stream comes: skip to a keyframe
      return;
    }
    const timestamp = ++this.frames * 1000;
    this.captured.set(timestamp, captured);
    if (this.captured.size > CATCH_UP_QUEUE + 16) {  // frames the decoder never gave back
      this.captured.delete(this.captured.keys().next().value);
    }
    try {
      this.decoder.decode(new EncodedVideoChunk({ type: key ? "key" : "delta", timestamp, data }));
    } catch (err) {
      this.restart();
    }
  }

  // A decoder for a new codec or size, once the browser says it decodes it (configure() alone
  // reports an unsupported profile later, through the error callback: a loop of restarts).
  async configure(codec, width, height, name) {
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.captured.clear();
    const config = { codec, optimizeForLatency: true };
    if (width && height) Object.assign(config, { codedWidth: width, codedHeight: height });
    this.checking = true;
    let supported = false;
    try {
      supported = (await VideoDecoder.isConfigSupported(config)).supported === true;
    } catch (err) {
      supported = false;
    }
    this.checking = false;
    if (this.stopped) return;
    if (!supported) {
      this.events.onUnsupported(codec || "no codec string");
      return;
    }
    this.decoder = new VideoDecoder({
      output: (frame) => this.draw(frame),
      error: (err) => {
        if (err && err.name === "NotSupportedError") this.events.onUnsupported(codec);
        else this.restart();
      },
    });
    this.decoder.configure(config);
    this.config = name;
    this.waitKey = true;
    this.started = 0;
    const held = this.held;
    this.held = [];
    for (const [buf] of held) this.message(buf); // from the keyframe that asked for it
  }

  draw(frame) {
    const captured = this.captured.get(frame.timestamp);
    this.captured.delete(frame.timestamp);
    if (this.canvas.width !== frame.displayWidth || this.canvas.height !== frame.displayHeight) {
      this.canvas.width = frame.displayWidth;
      this.canvas.height = frame.displayHeight;
    }
    this.ctx.drawImage(frame, 0, 0);
    frame.close();
    if (captured !== undefined) this.events.onPicture(captured);
  }

  // The decoder failed or fell behind: wait for a keyframe, and ask the server for one.
  restart() {
    this.waitKey = true;
    this.started = 0;
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
    this.config = "";
    this.captured.clear();
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send("key");
  }

  stop() {
    this.stopped = true;
    this.ws.close();
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    this.decoder = null;
  }
}
