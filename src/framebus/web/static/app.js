// Live tiles: each stream as H.264 (WebCodecs where the browser has it, else Media Source
// Extensions) or MJPEG (an <img>), and its stats refreshed every second. ?codec=mjpeg,
// ?codec=h264 (WebCodecs) or ?codec=mse forces one; ?width=N asks every stream scaled to N
// pixels wide (a slow link: fewer bytes, encoded once for all).
"use strict";
const grid = document.getElementById("grid");
const empty = document.getElementById("empty");
const status = document.getElementById("status");
const tiles = new Map();
const query = new URLSearchParams(location.search);
const forced = query.get("codec");
const width = /^[0-9]{2,4}$/.test(query.get("width") || "") ? `width=${query.get("width")}` : "";
// which H.264 player this browser takes: "webcodecs", "mse", or "" (MJPEG)
const h264Ready = (async () => {
  if (forced === "mjpeg") return "";
  if (forced !== "mse" && await h264Supported()) return "webcodecs";
  return forced !== "h264" && mseSupported() ? "mse" : "";
})();

function makeTile(name) {
  const fig = document.createElement("figure");
  fig.dataset.stream = name;
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = name;
  const canvas = document.createElement("canvas");
  canvas.hidden = true;
  const video = document.createElement("video");
  video.hidden = true;
  video.muted = true;
  video.playsInline = true;
  const overlay = document.createElement("div");
  overlay.className = "overlay";
  overlay.textContent = "connecting…";
  frame.append(img, canvas, video, overlay);
  const caption = document.createElement("figcaption");
  fig.append(frame, caption);
  grid.append(fig);
  const tile = { name, fig, img, canvas, video, overlay, caption, playing: false, player: null,
                 codec: "", why: "", noH264: "" };
  img.addEventListener("error", () => { tile.playing = false; });
  tiles.set(name, tile);
  return tile;
}

function wsUrl(name) {
  const url = new URL(`streams/${encodeURIComponent(name)}.h264`, document.baseURI);
  url.search = width;
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

function playMjpeg(tile, why) {
  tile.codec = "mjpeg";
  tile.why = why;
  tile.fig.dataset.codec = "mjpeg";
  tile.canvas.hidden = true;
  tile.video.hidden = true;
  tile.img.hidden = false;
  tile.img.src = `streams/${encodeURIComponent(tile.name)}.mjpg?t=${Date.now()}&${width}`;
  if (tile.last) update(tile, tile.last); // the caption says the codec at once
}

function playH264(tile, how) {
  const mse = how === "mse";
  tile.codec = mse ? "mse" : "h264";
  tile.why = "";
  tile.fig.dataset.codec = tile.codec;
  tile.img.removeAttribute("src");
  tile.img.hidden = true;
  tile.canvas.hidden = mse;
  tile.video.hidden = !mse;
  tile.fig.dataset.opened = performance.now();
  delete tile.fig.dataset.first;
  const Player = mse ? MsePlayer : H264Player;
  tile.player = new Player(mse ? tile.video : tile.canvas, wsUrl(tile.name), {
    onPicture: (captured) => {
      tile.fig.dataset.captured = captured; // for tools and tests: what is on screen
      if (!tile.fig.dataset.first) tile.fig.dataset.first = performance.now();
    },
    onUnsupported: (reason) => {
      tile.noH264 = reason; // e.g. a codec this browser cannot decode: MJPEG for this tile
      stopPlayer(tile);
      playMjpeg(tile, `H.264 not playable here (${reason})`);
    },
    onEnd: () => {
      // a connection that showed nothing (a proxy without WebSocket, too many encoders):
      // after three of those in a row this tile plays MJPEG
      tile.failures = tile.fig.dataset.first ? 0 : (tile.failures || 0) + 1;
      if (tile.failures >= 3) tile.noH264 = "the WebSocket showed no picture";
      stopPlayer(tile);
      tile.playing = false;
    },
  });
  if (tile.last) update(tile, tile.last);
}

function stopPlayer(tile) {
  if (tile.player) tile.player.stop();
  tile.player = null;
}

async function play(tile) {
  tile.playing = true;
  const how = await h264Ready;
  if (how && !tile.noH264) {
    playH264(tile, how);
  } else {
    const why = forced === "mjpeg" ? "" : tile.noH264 ? `H.264 not playable here (${tile.noH264})`
      : "this browser decodes no H.264 here (WebCodecs needs HTTPS or localhost)";
    playMjpeg(tile, why);
  }
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  return seconds < 10 ? `${Math.round(seconds * 1000)} ms` : `${Math.round(seconds)} s`;
}

function span(cls, text) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  return el;
}

function update(tile, s) {
  tile.last = s;
  const live = s.state === "live";
  let codec = { h264: "H.264", mse: "H.264 (MSE)", mjpeg: "MJPEG" }[tile.codec] || "-";
  if (tile.player && tile.player.passthrough) codec += " (camera's)";
  const label = span("meta codec", codec);
  if (tile.why) label.title = tile.why;
  tile.caption.replaceChildren(
    span("name", s.name),
    span(live ? "state-live" : "state-other", s.state),
    label,
    span("meta", `${s.capture_fps.toFixed(1)} fps`),
    span("meta", s.width ? `${s.width}×${s.height}` : "-"),
    span("meta", `${s.readers} readers`),
    span("meta", `${s.viewers} viewers`),
    span("meta", `age ${live ? age(s.last_frame_age) : "-"}`),
  );
  if (s.error && !live) tile.caption.append(span("meta", s.error));
  if (live && !tile.playing) play(tile);
  tile.overlay.hidden = live;
  if (!live) tile.overlay.textContent = s.state === "connecting" ? "connecting…" : s.state;
}

function gone(tile) {
  stopPlayer(tile);
  tile.img.removeAttribute("src");
  tile.playing = false;
  tile.overlay.textContent = "gone";
  tile.overlay.hidden = false;
}

async function refresh() {
  let streams;
  try {
    const resp = await fetch("api/streams", { cache: "no-store" });
    streams = await resp.json();
  } catch (err) {
    status.textContent = "server unreachable";
    return;
  }
  status.textContent = `${streams.length} stream${streams.length === 1 ? "" : "s"}`;
  const seen = new Set();
  for (const s of streams) {
    seen.add(s.name);
    update(tiles.get(s.name) || makeTile(s.name), s);
  }
  for (const [name, tile] of tiles) if (!seen.has(name)) gone(tile);
  empty.hidden = tiles.size > 0;
}

refresh();
setInterval(refresh, 1000);
