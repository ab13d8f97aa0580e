// H.264 as fragmented MP4 into Media Source Extensions, for browsers without WebCodecs (a page
// on plain HTTP from another machine). The server's messages (framebus/web/_h264.py, ?format=
// fmp4): a 16-byte header (version 2, flags, codec length, init length, origin), the codec
// string, an init segment with each keyframe, one fragment per frame. The page keeps the
// video at the live edge: MSE buffers as players do, which a live view must not.
"use strict";

const LIVE_EDGE = 0.05; // seconds behind the newest frame the video is kept
const MAX_LAG = 0.3; // further behind than this: jump to the live edge
const KEEP = 10; // seconds of video kept buffered behind the live edge
const MAX_QUEUE = 256; // fragments waiting to be appended (a joiner's group of pictures fits)

function mseSupported() {
  return "MediaSource" in window &&
    MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"');
}

class MsePlayer {
  // video: the <video> element; url: the stream's WebSocket URL (?format=fmp4 is added);
  // events: as H264Player's (onPicture(captureTime), onUnsupported(reason), onEnd(code)).
  constructor(video, url, events) {
    this.video = video;
    this.url = url;
    this.events = events;
    this.queue = [];
    this.sb = null;
    this.init = null; // the init segment the source buffer was set up with
    this.origin = 0;
    this.waitKey = true;
    this.passthrough = false;
    this.stopped = false;
    this.frameCallback = null;
    this.watchFrames();
    this.open();
  }

  open() {
    const url = new URL(this.url);
    url.searchParams.set("format", "fmp4");
    const ws = new WebSocket(url.href);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (ev) => { if (ev.data instanceof ArrayBuffer) this.message(ev.data); };
    ws.onclose = (ev) => { if (this.ws === ws && !this.stopped) this.events.onEnd(ev.code); };
    this.ws = ws;
  }

  message(buf) {
    if (buf.byteLength < 16) return;
    const view = new DataView(buf);
    if (view.getUint8(0) !== 2) return;
    const flags = view.getUint8(1);
    const key = (flags & 1) === 1;
    this.passthrough = (flags & 2) === 2;
    const n = view.getUint8(2);
    const initLength = view.getUint32(4, true);
    this.origin = view.getFloat64(8, true);
    if (16 + n + initLength > buf.byteLength) return;
    const codec = String.fromCharCode(...new Uint8Array(buf, 16, n));
    const init = new Uint8Array(buf, 16 + n, initLength);
    const fragment = new Uint8Array(buf, 16 + n + initLength);
    if (key && initLength && !this.sameInit(init)) {
      this.setup(codec, init.slice());
    }
    if (key) this.waitKey = false;
    if (this.waitKey || !this.init) return;
    if (this.queue.length >= MAX_QUEUE) { // the browser appends slower than frames come
      this.restart();
      return;
    }
    this.queue.push(fragment);
    this.pump();
  }

  sameInit(init) {
    const old = this.init;
    if (!old || old.length !== init.length) return false;
    for (let i = 0; i < init.length; i++) if (old[i] !== init[i]) return false;
    return true;
  }

  // A new media source for a new stream (first keyframe, or a codec or size change).
  setup(codec, init) {
    const mime = `video/mp4; codecs="${codec}"`;
    if (!MediaSource.isTypeSupported(mime)) {
      this.events.onUnsupported(codec || "no codec string");
      return;
    }
    this.init = init;
    this.queue = [init];
    this.sb = null;
    const ms = new MediaSource();
    ms.addEventListener("sourceopen", () => {
      if (this.stopped) return;
      try {
        this.sb = ms.addSourceBuffer(mime);
      } catch (err) {
        this.events.onUnsupported(`${codec}: ${err.message || err}`);
        return;
      }
      this.sb.mode = "segments";
      this.sb.addEventListener("updateend", () => { this.chase(); this.pump(); });
      this.sb.addEventListener("error", () => this.restart());
      this.pump();
    }, { once: true });
    if (this.video.src) URL.revokeObjectURL(this.video.src);
    this.video.src = URL.createObjectURL(ms);
    this.video.muted = true;
    this.video.play().catch(() => {});
  }

  pump() {
    const sb = this.sb;
    if (!sb || sb.updating || !this.queue.length) return;
    try {
      sb.appendBuffer(this.queue.shift());
    } catch (err) { // QuotaExceeded, or the media source was closed
      this.restart();
    }
  }

  // Keep the video at the live edge, and only a little of the past buffered.
  chase() {
    const sb = this.sb;
    const video = this.video;
    if (!sb || !sb.buffered.length) return;
    const end = sb.buffered.end(sb.buffered.length - 1);
    const start = sb.buffered.start(sb.buffered.length - 1);
    if (end - video.currentTime > MAX_LAG || video.currentTime < start) {
      video.currentTime = Math.max(start, end - LIVE_EDGE);
    }
    if (video.paused) video.play().catch(() => {});
    const first = sb.buffered.start(0);
    if (end - first > 2 * KEEP && !sb.updating) sb.remove(first, end - KEEP);
  }

  // The capture time of each frame the video shows, from its decode time.
  watchFrames() {
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const next = (now, meta) => {
      if (this.stopped) return;
      if (this.origin) this.events.onPicture(this.origin + meta.mediaTime);
      this.frameCallback = this.video.requestVideoFrameCallback(next);
    };
    this.frameCallback = this.video.requestVideoFrameCallback(next);
  }

  restart() {
    this.waitKey = true;
    this.queue = [];
    this.init = null; // the next keyframe's init segment sets up a fresh media source
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send("key");
  }

  stop() {
    this.stopped = true;
    this.ws.close();
    if (this.frameCallback !== null) this.video.cancelVideoFrameCallback(this.frameCallback);
    this.video.removeAttribute("src");
    this.video.load();
  }
}
