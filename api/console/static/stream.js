// The stream page's lower sections: its settings, restream targets, session history and
// recordings. Loaded before app.js, whose helpers (h, api, field, showFieldErrors, failed…)
// these functions use when called.
"use strict";

const HISTORY_PER_PAGE = 10;

function checkField(id, label, checked) {
  return h("div", { class: "field check" },
    h("input", { type: "checkbox", id, checked }), " ", h("label", { for: id }, label),
    h("p", { class: "field-error", id: `${id}-error`, hidden: true }));
}

function numberInput(id, value, min, max) {
  return h("input", { type: "number", id, value, min, max, step: 1, inputmode: "numeric", "aria-describedby": `${id}-hint ${id}-error` });
}

function asNumber(input) {
  const text = input.value.trim();
  return text === "" || Number.isNaN(Number(text)) ? text : Number(text);
}

// Each lower section: its nodes, and refresh(stream, statusChanged) called on every refresh.
// viewer is the page's token form (viewerTokenForm): the recordings play with its token.
function streamSections(stream, reload, viewer) {
  const settings = settingsSection(stream, reload);
  const targets = targetsSection(stream, reload);
  const history = historySection(stream);
  const recordings = recordingsSection(stream, viewer);
  let ticks = 0;
  return {
    nodes: [...settings, ...targets.nodes, ...history.nodes, ...recordings.nodes],
    refresh(next, statusChanged) {
      targets.refresh(next);
      ticks += 1;
      if (statusChanged || recordings.pending() || ticks % 5 === 0) { history.load(); recordings.load(); }
    },
    stop() { recordings.stop(); },
  };
}

function latencySelect(mode) {
  const select = h("select", { id: "f-latencyMode" },
    h("option", { value: "standard" }, "Standard"), h("option", { value: "low" }, "Low"));
  select.value = mode === "low" ? "low" : "standard";
  return select;
}

const POLICY_HINT = "Signed: players need a playback token signed with one of your signing keys (see the API). Applies at once, also while live.";

function policySelect(policy) {
  const select = h("select", { id: "f-playbackPolicy", "aria-describedby": "f-playbackPolicy-hint f-playbackPolicy-error" },
    h("option", { value: "public" }, "Public: anyone with the URL"),
    h("option", { value: "signed" }, "Signed: a playback token is needed"));
  select.value = policy === "signed" ? "signed" : "public";
  return select;
}

function settingsSection(stream, reload) {
  const saved = h("p", { class: "muted", role: "status" });
  const form = h("form", { novalidate: true, "aria-labelledby": "settings-heading" },
    field("f-name", "Name", h("input", { type: "text", id: "f-name", value: stream.name, required: true, autocomplete: "off" })),
    checkField("f-record", "Record each live session", stream.record),
    field("f-reconnectWindowSeconds", "Reconnect window (seconds)",
      numberInput("f-reconnectWindowSeconds", stream.reconnectWindowSeconds, 0, 1800),
      "How long a dropped encoder may take to come back into the same session; 0 ends it at once."),
    field("f-maxDurationSeconds", "Maximum duration (seconds)",
      numberInput("f-maxDurationSeconds", stream.maxDurationSeconds, 60, null),
      "The encoder is disconnected when a live session reaches it."),
    field("f-latencyMode", "Latency mode", latencySelect(stream.latencyMode),
      "Low: LL-HLS parts of about 200 ms, about a second behind the encoder. Standard: 2 s MPEG-TS segments for players that need them."),
    field("f-playbackPolicy", "Playback", policySelect(stream.playbackPolicy), POLICY_HINT),
    h("p", { class: "form-error", role: "alert" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Save settings")), saved);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    saved.textContent = "";
    const body = {
      name: form.querySelector("#f-name").value, record: form.querySelector("#f-record").checked,
      reconnectWindowSeconds: asNumber(form.querySelector("#f-reconnectWindowSeconds")),
      maxDurationSeconds: asNumber(form.querySelector("#f-maxDurationSeconds")),
      latencyMode: form.querySelector("#f-latencyMode").value,
      playbackPolicy: form.querySelector("#f-playbackPolicy").value,
    };
    try {
      const next = await api("PATCH", `/v1/livestreams/${stream.id}`, body);
      showFieldErrors(form, { message: "", details: [] }, []);
      form.querySelector(".form-error").textContent = "";
      main.querySelector("h1").textContent = next.name;
      saved.textContent = "Settings saved; the playback policy applies at once, the others from the next live session.";
      reload(next);
    } catch (err) {
      if (err.status === 401) failed(err);
      else showFieldErrors(form, err, ["name", "record", "reconnectWindowSeconds", "maxDurationSeconds", "latencyMode", "playbackPolicy"]);
    }
  });
  return [h("h2", { id: "settings-heading" }, "Settings"), form];
}

function targetsSection(stream, reload) {
  const base = `/v1/livestreams/${stream.id}/restream`;
  const region = h("div", { id: "targets" });
  const heading = h("h3", { id: "target-form-heading", tabindex: "-1" }, "Add a restream target");
  const url = h("input", { type: "text", id: "f-url", autocomplete: "off", placeholder: "rtmp://live.example.com/app" });
  const key = h("input", { type: "password", id: "f-streamKey", autocomplete: "off" });
  const submit = h("button", { type: "submit" }, "Add target");
  const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel editing");
  const form = h("form", { novalidate: true, "aria-labelledby": "target-form-heading" },
    field("f-url", "Target URL (rtmp:// or rtmps://)", url),
    field("f-streamKey", "Target stream key", key),
    h("p", { class: "form-error", role: "alert" }), h("div", { class: "actions" }, submit, cancel));
  let editing = null;
  const reset = () => {
    editing = null; url.value = ""; key.value = "";
    heading.textContent = "Add a restream target"; submit.textContent = "Add target"; cancel.hidden = true;
    showFieldErrors(form, { message: "", details: [] }, []);
    form.querySelector(".form-error").textContent = "";
  };
  const edit = (target) => {
    editing = target.id; url.value = target.url; key.value = target.streamKey;
    heading.textContent = "Edit restream target"; submit.textContent = "Save target"; cancel.hidden = false;
    url.focus();
  };
  cancel.addEventListener("click", () => { reset(); heading.focus(); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { url: url.value.trim(), streamKey: key.value };
    try {
      if (editing) await api("PATCH", `${base}/${editing}`, body);
      else await api("POST", base, body);
      reset();
      reload();
    } catch (err) {
      if (err.status === 401) failed(err); else showFieldErrors(form, err, ["url", "streamKey"]);
    }
  });
  const remove = async (target, button) => {
    if (!window.confirm(`Remove the restream target ${target.url}?`)) return;
    button.disabled = true;
    try { await api("DELETE", `${base}/${target.id}`); if (editing === target.id) reset(); reload(); heading.focus(); }
    catch (err) { failed(err); button.disabled = false; }
  };
  const refresh = (next) => {
    const targets = next.restream || [];
    if (!targets.length) { region.replaceChildren(h("p", { class: "muted" }, "No restream targets.")); return; }
    region.replaceChildren(h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Target"), h("th", {}, "State"), h("th", { class: "optional" }, "Retries"),
        h("th", {}, "Last error"), h("th", {}, h("span", { class: "visually-hidden" }, "Actions")))),
      h("tbody", {}, targets.map((t) => {
        const editButton = h("button", { type: "button", class: "secondary", "aria-label": `Edit ${t.url}` }, "Edit");
        editButton.addEventListener("click", () => edit(t));
        const removeButton = h("button", { type: "button", class: "danger", "aria-label": `Remove ${t.url}` }, "Remove");
        removeButton.addEventListener("click", () => remove(t, removeButton));
        return h("tr", { "data-target": t.id }, h("td", { class: "wrap" }, t.url), h("td", { class: "state" }, t.status),
          h("td", { class: "optional" }, t.retries), h("td", { class: "last-error wrap" }, t.lastError || "–"),
          h("td", {}, h("div", { class: "row-actions" }, editButton, removeButton)));
      }))));
  };
  refresh(stream);
  return { nodes: [h("h2", {}, "Restream targets"), region, heading, form], refresh };
}

// A paged table loaded from `path` (a {pageInfo, data} list), with previous / next buttons.
function pagedTable(id, path, perPage, columns, empty) {
  const region = h("div", { id, "aria-live": "polite" }, h("p", {}, "Loading…"));
  let pageNumber = 1;
  let lastData = [];
  const load = async () => {
    try {
      const result = await api("GET", `${path}?page=${pageNumber}&perPage=${perPage}`);
      lastData = result.data;
      const info = result.pageInfo;
      if (!result.data.length && pageNumber > 1) { pageNumber = Math.max(1, info.lastPage); return load(); }
      if (!result.data.length) { region.replaceChildren(h("p", { class: "muted" }, empty)); return; }
      const button = (label, n) => {
        const b = h("button", { type: "button", class: "secondary" }, label);
        b.addEventListener("click", () => { pageNumber = n; load(); });
        return b;
      };
      region.replaceChildren(
        h("table", {}, h("thead", {}, h("tr", {}, columns.map(([label, , cls]) => h("th", { class: cls }, label)))),
          h("tbody", {}, result.data.map((row) => h("tr", {},
            columns.map(([, cell, cls]) => h("td", { class: cls }, cell(row))))))),
        h("nav", { class: "pager", "aria-label": `${id} pages` },
          info.currentPage > 1 ? button("← Previous", info.currentPage - 1) : null,
          h("span", {}, `Page ${info.currentPage} of ${Math.max(1, info.lastPage)}`),
          info.currentPage < info.lastPage ? button("Next →", info.currentPage + 1) : null));
    } catch (err) { failed(err); }
  };
  return { region, load, data: () => lastData };
}

const when = (value) => (value ? new Date(value).toLocaleString() : "–");
const seconds = (value) => (value === null || value === undefined ? "–" :
  `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`);

function historySection(stream) {
  const table = pagedTable("history", `/v1/livestreams/${stream.id}/sessions`, HISTORY_PER_PAGE, [
    ["Started", (s) => when(s.startedAt)],
    ["Duration", (s) => (s.endedAt ? seconds(s.duration) : "live")],
    ["End", (s) => s.endReason || "–", "optional"],
    ["Publisher", (s) => s.clientAddress, "optional"],
    ["Reconnects", (s) => s.reconnects, "optional"],
  ], "No live sessions yet.");
  table.load();
  return { nodes: [h("h2", {}, "Session history"), table.region], load: table.load };
}

function recordingsSection(stream, viewer) {
  const video = h("video", { id: "recording-player", controls: true, muted: true, playsinline: true, "aria-label": "Recording player", hidden: true });
  const note = h("p", { class: "muted", id: "recording-note", "aria-live": "polite" });
  let vod = null;
  const stopPlayer = () => { if (vod) vod.destroy(); vod = null; };
  const play = (recording) => {
    stopPlayer();
    const query = viewer.query();
    if (query === null) {
      video.hidden = true;
      note.textContent = SIGNED_RECORDING_NOTE;
      viewer.focus();
      return;
    }
    video.hidden = false;
    const source = new URL(recording.recordingUrl).pathname + query; // served by this origin
    if (window.Hls && window.Hls.isSupported()) {
      vod = new window.Hls();
      vod.on(window.Hls.Events.ERROR, (event, data) => {
        if (!data.fatal) return;
        stopPlayer(); video.hidden = true;
        note.textContent = refusedToken(data) ? TOKEN_REFUSED : `Playback error: ${data.details}.`;
      });
      vod.loadSource(source); vod.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = source; vod = { destroy() { video.removeAttribute("src"); video.load(); } };
    } else { note.textContent = window.Hls ? "This browser cannot play HLS." : NO_PLAYER; return; }
    note.textContent = `Playing the recording of ${when(recording.startedAt)}.`;
    video.play().catch(() => { note.textContent = "Press play to watch."; });
    video.focus();
  };
  const remove = async (recording, button) => {
    if (!window.confirm(`Delete the recording of ${when(recording.startedAt)}? This cannot be undone.`)) return;
    button.disabled = true;
    try {
      await api("DELETE", `/v1/livestreams/${stream.id}/recordings/${recording.id}`);
      stopPlayer(); video.hidden = true; note.textContent = "Recording deleted.";
      table.load();
    } catch (err) { failed(err); button.disabled = false; }
  };
  const actions = (r) => {
    const playButton = h("button", { type: "button", class: "secondary", "aria-label": `Play the recording of ${when(r.startedAt)}`, disabled: r.status === "failed" }, "Play");
    playButton.addEventListener("click", () => play(r));
    const deleteButton = h("button", { type: "button", class: "danger", "aria-label": `Delete the recording of ${when(r.startedAt)}` }, "Delete");
    deleteButton.addEventListener("click", () => remove(r, deleteButton));
    return h("div", { class: "row-actions" }, playButton, deleteButton);
  };
  const table = pagedTable("recordings", `/v1/livestreams/${stream.id}/recordings`, HISTORY_PER_PAGE, [
    ["Started", (r) => when(r.startedAt)],
    ["Duration", (r) => seconds(r.duration)],
    ["Status", (r) => (r.error ? `${r.status}: ${r.error}` : r.status)],
    ["Size", (r) => `${(r.bytes / 1e6).toFixed(1)} MB`, "optional"],
    ["Actions", actions],
  ], stream.record ? "No recordings yet." : "No recordings: recording is off for this stream.");
  table.load();
  return {
    nodes: [h("h2", {}, "Recordings"), table.region, video, note],
    load: table.load,
    pending: () => table.data().some((r) => r.status === "recording"),
    stop: stopPlayer,
  };
}

const SIGNED_RECORDING_NOTE = "This stream is signed: its recordings play with a playback token only. Paste one in “Viewer token” above, then press Play again.";
const TOKEN_REFUSED = "The viewer token was refused (expired, for another stream or account, or its signing key deleted): paste a new one.";

// Whether a fatal hls.js error is the server refusing the token (403).
const refusedToken = (data) => Boolean(data.response && data.response.code === 403);

// What is wrong with `token` as a playback token of `streamId`, read from its claims ("" when
// nothing is; the server checks its signature).
function tokenProblem(token, streamId) {
  let claims;
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch (err) { return "This is not a playback token (a JWT, as `liverelay playback-token` prints)."; }
  if (claims.sub !== streamId) return `This token is for another stream (${claims.sub}).`;
  if (![].concat(claims.aud).includes("v")) return "This token is not a playback token (its audience is not “v”).";
  if (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now()) return `This token expired at ${new Date(claims.exp * 1000).toLocaleString()}.`;
  return "";
}

// The token to play a signed stream and its recordings with, pasted by the operator: kept in
// this page only (never stored), gone when the page is left. onChange() is called on each
// change; query() is "" for a public stream, "?token=…" for a signed one, null without a token.
function viewerTokenForm(streamId, onChange) {
  let token = "";
  let signed = false;
  const input = h("input", { type: "password", id: "f-viewerToken", autocomplete: "off", spellcheck: "false", "aria-describedby": "f-viewerToken-hint f-viewerToken-error" });
  const forget = h("button", { type: "button", class: "secondary" }, "Forget token");
  const form = h("form", { novalidate: true, id: "viewer-token", "aria-label": "Token for the players" },
    field("f-viewerToken", "Viewer token", input,
      "A playback token signed with one of your signing keys (`liverelay playback-token`). The console signs none; it keeps this one in this page only, until you leave it."),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Play with token"), forget));
  const error = form.querySelector(".field-error");
  const showProblem = (problem) => {
    error.textContent = problem; error.hidden = !problem;
    if (problem) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = input.value.trim();
    const problem = next ? tokenProblem(next, streamId) : "Paste a playback token first.";
    showProblem(problem);
    if (problem) return;
    token = next;
    onChange();
  });
  forget.addEventListener("click", () => { input.value = ""; token = ""; showProblem(""); onChange(); input.focus(); });
  return {
    node: form,
    show(policy) { signed = policy === "signed"; form.hidden = !signed; },
    query: () => (!signed ? "" : token ? `?token=${encodeURIComponent(token)}` : null),
    focus: () => input.focus(),
  };
}
