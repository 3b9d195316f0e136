// The liverelay operator console: plain JavaScript on the service's own API.
// The session lives in an HttpOnly cookie set by POST /console/session; nothing secret is kept
// in storage. Every request sends X-Liverelay-Console: 1, which state-changing requests
// authenticated by the cookie must carry (the CSRF protection).
"use strict";

const main = document.getElementById("main");
const notice = document.getElementById("notice");
const LIST_REFRESH_MS = 5000;
const STREAM_REFRESH_MS = 2000;
const PER_PAGE = 20;
const NO_PLAYER = "The player (hls.js) is not installed on the server: run `npm ci` in the liverelay directory.";
const SIGNED_NOTE = "A signed stream plays with a playback token only, which the console does not sign: paste one in “Viewer token” to watch.";
let timer = null;
let player = null;
let sections = null;
let signedIn = null;

class ApiError extends Error {
  constructor(status, message, details) {
    super(message);
    this.status = status;
    this.details = details || [];
  }
}

// h("tag", {attr: value, onclick: fn}, child...) builds an element; text is never parsed as HTML.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

async function api(method, path, body) {
  const headers = { "X-Liverelay-Console": "1" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "liverelay did not answer: check that the server is running and try again");
  }
  if (response.status === 204) return null;
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (!response.ok) {
    const message = (data && data.message) || `request failed (HTTP ${response.status})`;
    throw new ApiError(response.status, message, data && data.details);
  }
  return data;
}

function showNotice(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

// A failed call: a lost session goes back to sign-in; anything else is shown, never a blank page.
function failed(err) {
  if (err.status === 401 && location.hash !== "#/signin") {
    signedIn = null;
    go("#/signin", "Your session has ended: sign in again.");
    return;
  }
  const hint = err.status === 503 ? " The service is unavailable for now; it will be retried." : "";
  showNotice(err.message + hint);
}

function go(hash, message) {
  if (location.hash === hash) route(message);
  else { pendingMessage = message; location.hash = hash; }
}
let pendingMessage = null;

function page(title, ...content) {
  document.title = `${title} · liverelay console`;
  const heading = h("h1", { tabindex: "-1" }, title);
  main.replaceChildren(heading, ...content);
  heading.focus();
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
  if (player) player.destroy();
  player = null;
  if (sections) sections.stop();
  sections = null;
}

async function route(message) {
  stop();
  showNotice(message || pendingMessage);
  pendingMessage = null;
  const hash = location.hash || "#/streams";
  if (!signedIn && hash !== "#/signin") {
    try { signedIn = await api("GET", "/console/session"); }
    catch (err) { if (err.status !== 401) { failed(err); return; } }
    if (!signedIn) { go("#/signin", message); return; }
  }
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").textContent = signedIn ? `Signed in as ${signedIn.user.name}` : "";
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  if (path === "/signin") return signInPage();
  if (path === "/streams") return streamsPage(params);
  if (path === "/streams/new") return createPage();
  if (path === "/webhooks") return webhooksPage();
  const hook = path.match(/^\/webhooks\/([0-9a-f]{24})$/);
  if (hook) return webhookPage(hook[1]);
  const match = path.match(/^\/streams\/([0-9a-f]{24})$/);
  if (match) return streamPage(match[1]);
  page("Not found", h("p", {}, "There is no such page. ", h("a", { href: "#/streams" }, "Back to the streams")));
}

function field(id, label, input, hint) {
  return h("div", { class: "field" },
    h("label", { for: id }, label), input,
    hint ? h("p", { class: "muted", id: `${id}-hint` }, hint) : null,
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }));
}

function showFieldErrors(form, err, known) {
  for (const el of form.querySelectorAll(".field-error")) { el.hidden = true; el.textContent = ""; }
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  const general = form.querySelector(".form-error");
  const leftover = [];
  for (const detail of err.details) {
    const name = detail.field.split(/[.[]/)[0];
    const target = known.includes(name) && form.querySelector(`#f-${name}-error`);
    if (target) {
      target.textContent = detail.message; target.hidden = false;
      form.querySelector(`#f-${name}`).setAttribute("aria-invalid", "true");
    } else leftover.push(detail.field ? `${detail.field}: ${detail.message}` : detail.message);
  }
  general.textContent = err.details.length && !leftover.length ? "Please correct the fields above." :
    [err.message, ...leftover].join(" ");
}

function signInPage() {
  document.getElementById("nav").hidden = true;
  const form = h("form", { novalidate: true },
    field("f-apikey", "API key", h("input", { type: "text", id: "f-apikey", autocomplete: "username", required: true })),
    field("f-secret", "Secret", h("input", { type: "password", id: "f-secret", autocomplete: "current-password" })),
    h("details", {}, h("summary", {}, "Sign in with a token instead"),
      field("f-token", "Token (JWT)", h("input", { type: "password", id: "f-token", autocomplete: "off" }),
        "A token from `liverelay token` or `liverelay apikey create`; the API key and secret are then not needed.")),
    h("p", { class: "form-error", role: "alert", "aria-live": "assertive" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = form.querySelector("#f-token").value.trim();
    const body = token ? { token } : {
      apikey: form.querySelector("#f-apikey").value.trim(), secret: form.querySelector("#f-secret").value,
    };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      signedIn = await api("POST", "/console/session", body);
      go("#/streams");
    } catch (err) {
      if (err.status === 0 || err.status >= 500) showNotice(err.message);
      showFieldErrors(form, err, ["apikey", "secret", "token"]);
    } finally { button.disabled = false; }
  });
  page("Sign in", h("p", { class: "muted" }, "Sign in with an API key and its secret (`liverelay apikey create`)."), form);
}

async function copy(text, button) {
  try { await navigator.clipboard.writeText(text); }
  catch (err) {
    const area = h("textarea", { "aria-hidden": "true" });
    area.value = text; document.body.append(area); area.select();
    document.execCommand("copy"); area.remove();
  }
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = button.dataset.label; }, 1500);
}

function copyButton(label, value) {
  const button = h("button", { type: "button", class: "secondary", "data-label": label }, label);
  button.addEventListener("click", () => copy(value(), button));
  return button;
}

async function streamPage(id) {
  let stream;
  try { stream = await api("GET", `/v1/livestreams/${id}`); }
  catch (err) {
    if (err.status === 404) {
      page("Stream not found", h("p", {}, "This stream does not exist (it may have been deleted). ",
        h("a", { href: "#/streams" }, "Back to the streams")));
    } else failed(err);
    return;
  }
  const status = h("span", { id: "status" }, badge(stream.status));
  const policy = h("span", { id: "playback-policy" }, stream.playbackPolicy);
  const keyValue = h("code", { class: "value", id: "stream-key" }, "••••••••");
  let revealed = false;
  const reveal = h("button", { type: "button", class: "secondary", "aria-controls": "stream-key" }, "Reveal");
  reveal.addEventListener("click", () => {
    revealed = !revealed;
    keyValue.textContent = revealed ? stream.streamKey : "••••••••";
    reveal.textContent = revealed ? "Hide" : "Reveal";
  });
  const video = h("video", { id: "player", controls: true, muted: true, playsinline: true, "aria-label": "Live player" });
  const playerNote = h("p", { class: "muted", id: "player-note", "aria-live": "polite" });
  // The live player plays with viewer.query(); playing is the query it was started with, and
  // refused the one whose token the server refused (not tried again until it changes).
  let playing = null;
  let refused = null;
  const viewer = viewerTokenForm(id, () => render());
  const figures = h("div", { id: "figures", "aria-live": "off" });
  const actions = h("div", { class: "actions" });
  page(stream.name,
    h("p", {}, "Status: ", status, " ", h("a", { href: "#/streams" }, "All streams")),
    h("p", {}, "Playback: ", policy),
    h("h2", {}, "Encoder settings"),
    h("p", { class: "muted" }, "In OBS: Settings → Stream → Service: Custom."),
    h("dl", { class: "settings" },
      h("dt", {}, "Server"), h("dd", {}, h("code", { class: "value", id: "server" }, stream.streamUrl),
        copyButton("Copy server", () => stream.streamUrl)),
      ...(stream.secureStreamUrl ? [
        h("dt", {}, "Server (RTMPS)"), h("dd", {}, h("code", { class: "value", id: "secure-server" }, stream.secureStreamUrl),
          copyButton("Copy RTMPS server", () => stream.secureStreamUrl))] : []),
      h("dt", {}, "Stream Key"), h("dd", {}, keyValue, reveal, copyButton("Copy key", () => stream.streamKey))),
    h("h2", {}, "Player"), viewer.node, video, playerNote,
    h("h2", {}, "Live session"), figures,
    h("h2", {}, "Actions"), actions);
  const refetch = async () => {
    try { stream = await api("GET", `/v1/livestreams/${id}`); render(); } catch (err) { failed(err); }
  };
  sections = streamSections(stream, (next) => { if (next) { stream = next; render(); } else refetch(); }, viewer);
  main.append(...sections.nodes);
  let shownStatus = stream.status;
  const render = () => {
    if (sections) sections.refresh(stream, shownStatus !== stream.status);
    shownStatus = stream.status;
    status.replaceChildren(badge(stream.status));
    keyValue.textContent = revealed ? stream.streamKey : "••••••••";
    figures.replaceChildren(sessionFigures(stream.currentSession));
    actions.replaceChildren(...streamActions(stream, (next) => { stream = next; render(); }));
    policy.textContent = stream.playbackPolicy;
    viewer.show(stream.playbackPolicy);
    const query = viewer.query();
    showPoster(video, stream, query === refused ? null : query);
    if (player && playing !== query) { player.destroy(); player = null; }
    if (query === null) playerNote.textContent = SIGNED_NOTE;
    else if (query === refused) playerNote.textContent = TOKEN_REFUSED;
    else if (stream.status === "live" && !player) {
      playing = query;
      startPlayer(video, stream, playerNote, query, () => { refused = query; });
    } else if (stream.status !== "live") playerNote.textContent = window.Hls ? "The player starts when the stream is live." : NO_PLAYER;
  };
  render();
  timer = setInterval(async () => {
    try { stream = await api("GET", `/v1/livestreams/${id}`); showNotice(""); render(); }
    catch (err) {
      if (err.status === 404) { stop(); go(`#/streams/${id}`); } else failed(err);
    }
  }, STREAM_REFRESH_MS);
}

// A live stream's recent frame (its thumbnail) stands in the player until it plays; a signed
// stream's takes the viewer token (query: "?token=…", "" for a public stream, null without one).
function showPoster(video, stream, query) {
  const poster = stream.status === "live" && query !== null
    ? `/live/${stream.id}/thumbnail.jpg${query ? `${query}&` : "?"}width=640` : null;
  if (poster && video.getAttribute("poster") !== poster) video.setAttribute("poster", poster);
  if (!poster) video.removeAttribute("poster");
}

// Plays the stream's playlist with `query` (a signed stream's "?token=…": the playlists the
// server answers carry it in every URI, so hls.js sends it with each part and segment).
// onRefused() is called when the server refuses the token.
function startPlayer(video, stream, note, query, onRefused) {
  const source = new URL(stream.downstreamUrl).pathname + query; // served by this origin
  if (window.Hls && window.Hls.isSupported()) {
    player = new window.Hls({ lowLatencyMode: true });
    player.on(window.Hls.Events.ERROR, (event, data) => {
      if (!data.fatal) return;
      if (refusedToken(data)) { note.textContent = TOKEN_REFUSED; onRefused(); }
      else note.textContent = `Playback error: ${data.details}. It is retried on the next refresh.`;
      player.destroy(); player = null;
    });
    player.loadSource(source);
    player.attachMedia(video);
    note.textContent = "";
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = source; player = { destroy() { video.removeAttribute("src"); video.load(); } };
  } else {
    note.textContent = window.Hls ? "This browser cannot play HLS." : NO_PLAYER;
    return;
  }
  video.play().catch(() => { note.textContent = "Press play to watch."; });
}

function sessionFigures(session) {
  if (!session) return h("p", { class: "muted" }, "Not live.");
  const v = session.video || {}, a = session.audio || {};
  const uptime = Math.max(0, Math.round((Date.now() - new Date(session.startedAt)) / 1000));
  const item = (label, value) => h("div", {}, h("dt", {}, label), h("dd", {}, value ?? "–"));
  return h("div", {},
    h("dl", { class: "figures" },
      item("Uptime", `${Math.floor(uptime / 60)} min ${uptime % 60} s`),
      item("Video", v.codec), item("Resolution", v.width ? `${v.width}×${v.height}` : null),
      item("Frame rate", v.fps ? `${v.fps.toFixed(1)} fps` : null),
      item("Audio", a.codec ? `${a.codec} ${a.sampleRate || ""} Hz` : null),
      item("Bitrate", `${Math.round(session.bitrateKbps)} kbit/s`),
      item("Publisher", session.clientAddress), item("Encoder", session.encoder)),
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Output"), h("th", {}, "State"), h("th", {}, "Last error"))),
      h("tbody", {}, session.outputs.map((o) =>
        h("tr", {}, h("td", {}, o.name), h("td", {}, o.state), h("td", {}, o.lastError || "–"))))));
}

function streamActions(stream, update) {
  const act = (label, cls, question, run) => {
    const button = h("button", { type: "button", class: cls }, label);
    button.addEventListener("click", async () => {
      if (question && !window.confirm(question)) return;
      button.disabled = true;
      try { const next = await run(); if (next) update(next); showNotice(""); }
      catch (err) { failed(err); }
      finally { button.disabled = false; }
    });
    return button;
  };
  const base = `/v1/livestreams/${stream.id}`;
  return [
    stream.status === "disabled"
      ? act("Enable", "secondary", null, () => api("POST", `${base}/enable`))
      : act("Disable", "secondary", null, () => api("POST", `${base}/disable`)),
    stream.status === "live" ? act("Complete", "secondary", null, () => api("POST", `${base}/complete`)) : null,
    act("Reset stream key", "danger",
      "Reset the stream key? The encoder must be given the new key; a live publisher is disconnected.",
      () => api("POST", `${base}/reset-stream-key`)),
    act("Delete stream", "danger", `Delete “${stream.name}”? This cannot be undone.`, async () => {
      await api("DELETE", base);
      go("#/streams", `Stream “${stream.name}” deleted.`);
      return null;
    }),
  ].filter(Boolean);
}

document.getElementById("sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/console/session"); } catch (err) { failed(err); return; }
  signedIn = null;
  go("#/signin", "Signed out.");
});
window.addEventListener("hashchange", () => route());
route();
