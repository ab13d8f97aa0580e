// Live tiles: the MJPEG <img> of each stream, and its stats refreshed every second.
"use strict";
const grid = document.getElementById("grid");
const empty = document.getElementById("empty");
const status = document.getElementById("status");
const tiles = new Map();

function makeTile(name) {
  const fig = document.createElement("figure");
  fig.dataset.stream = name;
  const frame = document.createElement("div");
  frame.className = "frame";
  const img = document.createElement("img");
  img.alt = name;
  const overlay = document.createElement("div");
  overlay.className = "overlay";
  overlay.textContent = "connecting…";
  frame.append(img, overlay);
  const caption = document.createElement("figcaption");
  fig.append(frame, caption);
  grid.append(fig);
  const tile = { fig, img, overlay, caption, playing: false };
  img.addEventListener("error", () => { tile.playing = false; });
  tiles.set(name, tile);
  return tile;
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
  const live = s.state === "live";
  tile.caption.replaceChildren(
    span("name", s.name),
    span(live ? "state-live" : "state-other", s.state),
    span("meta", `${s.capture_fps.toFixed(1)} fps`),
    span("meta", s.width ? `${s.width}×${s.height}` : "-"),
    span("meta", `${s.readers} readers`),
    span("meta", `${s.viewers} viewers`),
    span("meta", `age ${live ? age(s.last_frame_age) : "-"}`),
  );
  if (s.error && !live) tile.caption.append(span("meta", s.error));
  if (live && !tile.playing) {
    tile.img.src = `streams/${encodeURIComponent(s.name)}.mjpg?t=${Date.now()}`;
    tile.playing = true;
  }
  tile.overlay.hidden = live;
  if (!live) tile.overlay.textContent = s.state === "connecting" ? "connecting…" : s.state;
}

function gone(tile) {
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
