// H.264 as fragmented MP4 into Media Source Extensions, for browsers without WebCodecs (a page
// on plain HTTP from another machine). The server's messages (framebus/web/_h264.py, ?format=
// fmp4): a 24-byte header (version 2, flags, codec length, init length, origin, the
// fragment's time), the codec string, an init segment with each keyframe, one fragment per
// frame. Samples last long (a gap must not read as a discontinuity): the page keeps the video
// at the newest fragment's time, not at the end of what is buffered.
"use strict";

const LEAD = 0.05; // seconds the video is kept ahead of the newest frame: shown once appended
const MAX_LAG = 0.2; // further from there than this: jump back to it
const KEEP = 10; // seconds of video kept buffered behind the live edge
const MAX_QUEUE = 700; // fragments waiting to be appended (a joiner's group of pictures fits)
const MAX_ERRORS = 3; // media errors without a picture between them: this browser cannot

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
    this.newest = 0; // the newest fragment's time
    this.errors = 0;
    this.waitKey = true;
    this.passthrough = false;
    this.stopped = false;
    this.frameCallback = null;
    this.onError = () => { // a decoder that failed: a fresh start, or MJPEG if it goes on
      if (this.stopped) return;
      if (++this.errors >= MAX_ERRORS) this.events.onUnsupported("the video element fails");
      else this.restart();
    };
    video.addEventListener("error", this.onError);
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
    if (buf.byteLength < 24) return;
    const view = new DataView(buf);
    if (view.getUint8(0) !== 2) return;
    const flags = view.getUint8(1);
    const key = (flags & 1) === 1;
    this.passthrough = (flags & 2) === 2;
    const n = view.getUint8(2);
    const initLength = view.getUint32(4, true);
    this.origin = view.getFloat64(8, true);
    const time = view.getFloat64(16, true);
    if (24 + n + initLength > buf.byteLength) return;
    const codec = String.fromCharCode(...new Uint8Array(buf, 24, n));
    const init = new Uint8Array(buf, 24 + n, initLength);
    const fragment = new Uint8Array(buf, 24 + n + initLength);
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
    this.newest = time;
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
      this.sb.addEventListener("updateend", () => {
        if (this.stopped) return;
        try { this.chase(); } catch (err) { /* a source buffer gone meanwhile */ }
        this.pump();
      });
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

  // Keep the video at the newest frame, and only a little of the past buffered.
  chase() {
    const sb = this.sb;
    const video = this.video;
    if (!sb || !sb.buffered.length || this.queue.length || video.seeking) return;
    const newest = this.newest;
    if (Math.abs(newest + LEAD - video.currentTime) > MAX_LAG) video.currentTime = newest + LEAD;
    if (video.paused) video.play().catch(() => {});
    const first = sb.buffered.start(0);
    if (newest - first > 2 * KEEP && !sb.updating) sb.remove(first, newest - KEEP);
  }

  // The capture time of each frame the video shows, from its decode time (the playing
  // position where the browser lacks requestVideoFrameCallback).
  watchFrames() {
    const shown = (time) => {
      this.errors = 0;
      if (this.origin) this.events.onPicture(this.origin + time);
    };
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) {
      this.onTime = () => { if (!this.stopped) shown(this.video.currentTime); };
      this.video.addEventListener("timeupdate", this.onTime);
      return;
    }
    const next = (now, meta) => {
      if (this.stopped) return;
      shown(meta.mediaTime);
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
    if (this.onTime) this.video.removeEventListener("timeupdate", this.onTime);
    this.video.removeEventListener("error", this.onError);
    if (this.video.src) URL.revokeObjectURL(this.video.src);
    this.video.removeAttribute("src");
    this.video.load();
  }
}
