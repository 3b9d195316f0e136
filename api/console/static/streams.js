// The streams list (status badges, search, paging, refreshing itself) and the form creating a
// stream. Loaded before app.js, whose helpers (h, api, page, field, ...) it uses at run time.
"use strict";

function badge(status) {
  const dot = status === "live" ? h("span", { "aria-hidden": "true" }, "● ") : null;
  return h("span", { class: `badge ${status}` }, dot, status === "live" ? "LIVE" : status);
}

async function streamsPage(params) {
  const pageNumber = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
  const name = params.get("name") || "";
  const search = h("input", { type: "search", id: "f-search", value: name, autocomplete: "off" });
  const form = h("form", { class: "toolbar", role: "search" },
    h("div", {}, h("label", { for: "f-search" }, "Search by name"), search),
    h("button", { type: "submit", class: "secondary" }, "Search"),
    h("a", { href: "#/streams/new", class: "button" }, "New stream"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = new URLSearchParams();
    if (search.value.trim()) q.set("name", search.value.trim());
    location.hash = `#/streams?${q}`;
  });
  const region = h("div", { "aria-live": "polite" }, h("p", {}, "Loading…"));
  page("Streams", form, region);
  const load = async () => {
    const q = new URLSearchParams({ page: pageNumber, perPage: PER_PAGE });
    if (name) q.set("name", name);
    try {
      const result = await api("GET", `/v1/livestreams?${q}`);
      region.replaceChildren(streamTable(result, name));
    } catch (err) { failed(err); }
  };
  await load();
  timer = setInterval(load, LIST_REFRESH_MS);
}

function streamTable(result, name) {
  if (!result.data.length) {
    return h("p", {}, name ? `No stream named like “${name}”.` : "No streams yet. ",
      name ? null : h("a", { href: "#/streams/new" }, "Create one"));
  }
  const rows = result.data.map((s) => h("tr", {},
    h("td", {}, h("a", { href: `#/streams/${s.id}` }, s.name)),
    h("td", {}, badge(s.status)),
    h("td", { class: "optional" }, s.record ? "recorded" : "not recorded"),
    h("td", { class: "optional" }, new Date(s.createdAt).toLocaleString())));
  const info = result.pageInfo;
  const link = (n, label) => {
    const q = new URLSearchParams({ page: n });
    if (name) q.set("name", name);
    return h("a", { href: `#/streams?${q}` }, label);
  };
  return h("div", {},
    h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Status"),
      h("th", { class: "optional" }, "Recording"), h("th", { class: "optional" }, "Created"))),
    h("tbody", {}, rows)),
    h("nav", { class: "pager", "aria-label": "Pages" },
      info.currentPage > 1 ? link(info.currentPage - 1, "← Previous") : null,
      h("span", {}, `Page ${info.currentPage} of ${Math.max(1, info.lastPage)}`),
      info.currentPage < info.lastPage ? link(info.currentPage + 1, "Next →") : null));
}

function createPage() {
  const form = h("form", { novalidate: true },
    field("f-name", "Name", h("input", { type: "text", id: "f-name", required: true, autocomplete: "off" })),
    h("div", { class: "field check" },
      h("input", { type: "checkbox", id: "f-record" }), " ", h("label", { for: "f-record" }, "Record the stream"),
      h("p", { class: "field-error", id: "f-record-error", hidden: true })),
    field("f-playbackPolicy", "Playback", policySelect("public"), POLICY_HINT),
    h("p", { class: "form-error", role: "alert" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create stream"),
      h("a", { href: "#/streams" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      name: form.querySelector("#f-name").value, record: form.querySelector("#f-record").checked,
      playbackPolicy: form.querySelector("#f-playbackPolicy").value,
    };
    try {
      const stream = await api("POST", "/v1/livestreams", body);
      go(`#/streams/${stream.id}`);
    } catch (err) {
      if (err.status === 401) failed(err); else showFieldErrors(form, err, ["name", "record", "playbackPolicy"]);
    }
  });
  page("New stream", form);
}
