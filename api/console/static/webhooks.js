// The webhooks pages: the list with create and delete, and one webhook's deliveries. Loaded
// before app.js, whose helpers these functions use when called.
"use strict";

const DELIVERIES_REFRESH_MS = 3000;

async function webhooksPage() {
  const url = h("input", { type: "url", id: "f-url", autocomplete: "off", placeholder: "https://example.com/hooks/liverelay", "aria-describedby": "f-url-error" });
  const events = h("input", { type: "text", id: "f-events", value: "*", autocomplete: "off", "aria-describedby": "f-events-hint f-events-error" });
  const form = h("form", { novalidate: true, "aria-labelledby": "new-webhook" },
    field("f-url", "URL", url),
    field("f-events", "Events", events,
      "Separated by commas: exact types (recording.ready), families (livestream.*, recording.*, restream.*) or * for all."),
    h("p", { class: "form-error", role: "alert" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create webhook")));
  const created = h("div", { id: "created-secret" });
  const region = h("div", { id: "webhooks", "aria-live": "polite" }, h("p", {}, "Loading…"));
  const load = async () => {
    try { region.replaceChildren(webhookTable((await api("GET", "/v1/webhooks")).data, load)); }
    catch (err) { failed(err); }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { url: url.value.trim(), events: events.value.split(",").map((e) => e.trim()).filter(Boolean) };
    try {
      const hook = await api("POST", "/v1/webhooks", body);
      showFieldErrors(form, { message: "", details: [] }, []);
      form.querySelector(".form-error").textContent = "";
      url.value = "";
      created.replaceChildren(secretBox(hook));
      created.querySelector("h2").focus();
      load();
    } catch (err) {
      if (err.status === 401) failed(err); else showFieldErrors(form, err, ["url", "events"]);
    }
  });
  page("Webhooks", h("p", {}, h("a", { href: "#/streams" }, "All streams")), created,
    h("h2", { id: "new-webhook" }, "New webhook"), form, h("h2", {}, "Existing webhooks"), region);
  await load();
}

// The signing secret, shown once after creation.
function secretBox(hook) {
  return h("section", { class: "secret-box", "aria-labelledby": "secret-heading" },
    h("h2", { id: "secret-heading", tabindex: "-1" }, "Webhook created: copy its signing secret now"),
    h("p", {}, "This secret signs every delivery (the Liverelay-Signature header). It is shown only once: store it now."),
    h("p", { class: "settings" }, h("code", { class: "value", id: "webhook-secret" }, hook.secret), " ",
      copyButton("Copy secret", () => hook.secret)),
    h("p", {}, h("a", { href: `#/webhooks/${hook.id}` }, "See its deliveries")));
}

function webhookTable(hooks, reload) {
  if (!hooks.length) return h("p", { class: "muted" }, "No webhooks yet.");
  return h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "URL"), h("th", {}, "Events"), h("th", { class: "optional" }, "Created"),
      h("th", {}, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, hooks.map((hook) => {
      const remove = h("button", { type: "button", class: "danger", "aria-label": `Delete the webhook ${hook.url}` }, "Delete");
      remove.addEventListener("click", async () => {
        if (!window.confirm(`Delete the webhook ${hook.url}? It receives no more events.`)) return;
        remove.disabled = true;
        try { await api("DELETE", `/v1/webhooks/${hook.id}`); showNotice(""); await reload(); main.querySelector("h1").focus(); }
        catch (err) { failed(err); remove.disabled = false; }
      });
      return h("tr", {},
        h("td", { class: "wrap" }, h("a", { href: `#/webhooks/${hook.id}`, "aria-label": `Deliveries of ${hook.url}` }, hook.url)),
        h("td", {}, hook.events.join(", ")), h("td", { class: "optional" }, when(hook.createdAt)),
        h("td", {}, remove));
    })));
}

async function webhookPage(id) {
  let hook;
  try { hook = await api("GET", `/v1/webhooks/${id}`); }
  catch (err) {
    if (err.status === 404) {
      page("Webhook not found", h("p", {}, "This webhook does not exist (it may have been deleted). ",
        h("a", { href: "#/webhooks" }, "Back to the webhooks")));
    } else failed(err);
    return;
  }
  const table = pagedTable("deliveries", `/v1/webhooks/${id}/deliveries`, 20, [
    ["Event", (d) => d.type],
    ["Status", (d) => d.status + (d.lastStatusCode ? ` (HTTP ${d.lastStatusCode})` : "")],
    ["Attempts", (d) => d.attempts],
    ["Last error", (d) => d.lastError || "–", "wrap"],
    ["Created", (d) => when(d.createdAt), "optional"],
    ["Next attempt", (d) => when(d.nextAttemptAt), "optional"],
  ], "No deliveries yet: events this webhook receives are listed here.");
  page("Webhook deliveries",
    h("p", {}, h("a", { href: "#/webhooks" }, "All webhooks")),
    h("dl", { class: "settings" }, h("dt", {}, "URL"), h("dd", {}, h("code", { class: "value" }, hook.url)),
      h("dt", {}, "Events"), h("dd", {}, hook.events.join(", "))),
    h("h2", {}, "Deliveries"), table.region);
  await table.load();
  timer = setInterval(table.load, DELIVERIES_REFRESH_MS);
}
