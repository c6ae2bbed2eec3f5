// webhook-stream console: plain JavaScript, no dependencies, no build step.
//
// Every list comes from the JSON API with the signed-in token (Authorization: Bearer);
// the page never decides what a token may see. Text from the API is always set with
// textContent, never parsed as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "webhook-stream-token";
  const PAGE_SIZE = 25;
  const DELIVERY_LOOKUPS = 10; // a delivery not found yet is looked up this often, 0.5 s apart
  const state = { token: null, who: null, timers: [], generation: 0 };

  // ------------------------------------------------------------------ DOM helpers

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "text") el.textContent = String(v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") el.textContent = String(v);
      else el.setAttribute(k, String(v));
    }
    for (const kid of kids.flat()) if (kid) el.append(kid);
    return el;
  }

  const $ = (sel) => document.querySelector(sel);

  function badge(kind, label) {
    return h("span", { class: "badge " + kind, text: label || kind });
  }

  function fmtTime(iso) {
    if (!iso) return "–";
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return String(iso);
    return new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }

  function ago(iso) {
    const t = Date.parse(iso || "");
    if (Number.isNaN(t)) return "";
    const sec = Math.max(0, Math.round((Date.now() - t) / 1000));
    if (sec < 60) return sec + "s ago";
    if (sec < 3600) return Math.round(sec / 60) + "m ago";
    if (sec < 86400) return Math.round(sec / 3600) + "h ago";
    return Math.round(sec / 86400) + "d ago";
  }

  function timeCell(iso) {
    return h("td", { class: "small", title: iso || "" }, fmtTime(iso), iso ? h("div", { class: "muted", text: ago(iso) }) : null);
  }

  function pct(rate) {
    return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(rate === 1 ? 0 : 1) + " %";
  }

  // ------------------------------------------------------------------ messages

  function showError(err) {
    const box = $("#error");
    box.textContent = "";
    if (err instanceof ApiError) {
      box.append(h("strong", { text: err.status ? "Error " + err.status : "Error" }), " ",
        h("code", { text: err.code }), ": ", err.message);
      if (err.field) box.append(h("span", { class: "muted", text: " (field: " + err.field + ")" }));
    } else {
      box.textContent = "Error: " + (err && err.message ? err.message : String(err));
    }
    box.hidden = false;
  }

  // A token revoked or expired while the page is open: back to the sign-in form.
  function fail(err) {
    if (err instanceof ApiError && err.status === 401) signOut(err);
    else showError(err);
  }

  function showNotice(...parts) {
    const box = $("#notice");
    box.textContent = "";
    box.append(...parts);
    box.hidden = false;
  }

  function clearMessages() {
    $("#error").hidden = true;
    $("#notice").hidden = true;
  }

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, code, message, field) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, "network", "the API did not answer (" + e.message + ")");
    }
    const text = await resp.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (e) { data = null; }
    }
    if (!resp.ok) {
      const e = data && data.error ? data.error : { code: "http_" + resp.status, message: text.slice(0, 300) || resp.statusText };
      throw new ApiError(resp.status, e.code, e.message, e.field);
    }
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const text = q.toString();
    return text ? "?" + text : "";
  }

  const enc = encodeURIComponent;

  // ------------------------------------------------------------------ routing

  function every(ms, fn) {
    state.timers.push(setInterval(fn, ms));
  }

  function clearTimers() {
    for (const t of state.timers) clearInterval(t);
    state.timers = [];
  }

  // Guards against a slow answer for a page the user has left.
  function current(gen) { return gen === state.generation; }

  async function route() {
    clearTimers();
    clearMessages();
    const gen = ++state.generation;
    if (!state.token) return renderSignIn();
    const path = (location.hash.replace(/^#/, "") || "/endpoints").split("?")[0];
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === parts[0]);
    const main = $("#main");
    try {
      if (parts[0] === "endpoints" && parts[1]) await pageEndpoint(main, parts[1], gen);
      else if (parts[0] === "deliveries" && parts[1]) await pageDelivery(main, parts[1], gen);
      else if (parts[0] === "deadletters") await pageDeadLetters(main, gen);
      else if (parts[0] === "rejected") await pageRejected(main, gen);
      else if (parts[0] === "overview") await pageOverview(main, gen);
      else if (parts[0] === "event-types") await pageEventTypes(main, parts[1], gen);
      else await pageEndpoints(main, gen);
    } catch (err) {
      if (!current(gen)) return;
      if (err instanceof ApiError && err.status === 401) return signOut(err);
      showError(err);
    }
  }

  // ------------------------------------------------------------------ sign-in

  function renderSignIn(err) {
    $("#nav").hidden = true;
    $("#signout").hidden = true;
    $("#who").textContent = "";
    const main = $("#main");
    const input = h("input", { type: "password", id: "token", name: "token", autocomplete: "off", placeholder: "admin or tenant token (wst_…)", required: true });
    const form = h("form", {
      id: "signin",
      onsubmit: (ev) => {
        ev.preventDefault();
        signIn(input.value.trim());
      },
    }, h("label", { for: "token", text: "API token" }), input, h("button", { class: "primary", type: "submit", text: "Sign in" }));
    main.replaceChildren(h("div", { class: "signin card" },
      h("h1", { text: "Sign in" }),
      h("p", { class: "muted", text: "The admin token sees every tenant; a tenant token only its own. The token stays in this browser tab (sessionStorage)." }),
      form));
    if (err) showError(err);
    input.focus();
  }

  async function signIn(token) {
    if (!token) return;
    state.token = token;
    try {
      state.who = await api("GET", "/whoami");
    } catch (err) {
      state.token = null;
      state.who = null;
      sessionStorage.removeItem(TOKEN_KEY);
      return renderSignIn(err);
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    $("#who").textContent = state.who.admin ? "admin" : "tenant " + state.who.tenant_id;
    route();
  }

  function signOut(err) {
    state.token = null;
    state.who = null;
    sessionStorage.removeItem(TOKEN_KEY);
    clearTimers();
    renderSignIn(err);
  }

  // ------------------------------------------------------------------ lists

  // A paginated table: load(after) -> {items, next}; row(item) -> <tr>.
  function pagedTable(id, headers, load, row, empty) {
    const tbody = h("tbody");
    const table = h("table", { id }, h("thead", {}, h("tr", {}, headers.map((t) => h("th", { class: t.startsWith("#") ? "num" : "", text: t.replace(/^#/, "") })))), tbody);
    const prev = h("button", { type: "button", text: "‹ Previous", disabled: true });
    const next = h("button", { type: "button", text: "Next ›", disabled: true });
    const info = h("span", { class: "muted small" });
    const stack = [];
    let at = null;
    let nextCursor = null;
    async function show(after) {
      const data = await load(after);
      at = after;
      nextCursor = data.next;
      const rows = await Promise.all(data.items.map(row));
      tbody.replaceChildren(...rows);
      if (!rows.length) tbody.append(h("tr", {}, h("td", { colspan: headers.length, class: "muted", text: empty })));
      prev.disabled = stack.length === 0;
      next.disabled = !nextCursor;
      info.textContent = "page " + (stack.length + 1) + (nextCursor ? "" : " (last)");
    }
    const guard = (fn) => async () => {
      try { clearMessages(); await fn(); } catch (err) { fail(err); }
    };
    next.addEventListener("click", guard(async () => { stack.push(at); await show(nextCursor); }));
    prev.addEventListener("click", guard(async () => { const back = stack.pop(); await show(back === undefined ? null : back); }));
    const el = h("div", {}, table, h("div", { class: "pager" }, prev, next, info));
    return { el, show, reload: () => show(at) };
  }

  function endpointStatus(sub, stats) {
    if (sub.disabled) return "disabled";
    const last = stats && stats.last_attempt;
    if (last && last.outcome !== "succeeded") return "failing";
    return "enabled";
  }

  // `ordering` and the `flow` block come with strict ordering; shown when the API has them.
  function blockedBy(sub) {
    const flow = sub.flow;
    if (!flow || typeof flow !== "object") return null;
    if (flow.blocked_by) return flow.blocked_by;
    return flow.blocked ? (typeof flow.blocked === "object" ? flow.blocked : {}) : null;
  }

  // The flow block in words (it used to be printed as raw JSON).
  function flowText(flow) {
    if (typeof flow !== "object") return String(flow);
    const parts = [];
    const blocked = blockedBy({ flow });
    if (blocked) {
      parts.push("blocked by " + (blocked.delivery_id || "an earlier delivery") +
        (blocked.since ? " since " + fmtTime(blocked.since) : ""));
    } else if (flow.owned !== false) {
      parts.push("not blocked");
    }
    if (flow.parked) parts.push(flow.parked + " parked");
    if (flow.owned === false) parts.push("state held by the worker that owns this endpoint's partition");
    return parts.join(" · ");
  }

  function orderCell(sub) {
    const td = h("td", { class: "small" });
    if (sub.ordering === "strict") td.append(badge("strict", "strict"));
    else if (sub.ordering) td.append(h("span", { class: "muted", text: String(sub.ordering).replace("_", " ") }));
    const blocked = blockedBy(sub);
    if (blocked) {
      const since = blocked.since ? "since " + fmtTime(blocked.since) : "";
      td.append(" ", h("span", { title: [since, blocked.delivery_id || ""].join(" ").trim() }, badge("blocked", "blocked")));
    }
    if (!td.childNodes.length) td.append(h("span", { class: "muted", text: "–" }));
    return td;
  }

  function lastAttemptCell(last) {
    if (!last) return h("td", { class: "muted small", text: "none in the last hour" });
    return h("td", { class: "small", title: last.attempted_at },
      badge(last.outcome), " ", last.status_code ? h("code", { text: String(last.status_code) }) : (last.error || ""),
      h("div", { class: "muted", text: ago(last.attempted_at) }));
  }

  async function pageEndpoints(main, gen) {
    const admin = state.who.admin;
    const tenant = h("input", { name: "tenant_id", placeholder: "all tenants" });
    const filters = h("form", { class: "filters", onsubmit: (ev) => { ev.preventDefault(); run(); } },
      admin ? h("label", {}, "Tenant", tenant) : null,
      admin ? h("button", { type: "submit", text: "Filter" }) : null);
    const headers = ["Endpoint", ...(admin ? ["Tenant"] : []), "Event types", "Status", "Order", "#Success (1h)", "Last attempt", "#Dead letters"];
    const list = pagedTable("endpoints", headers, async (after) => {
      const page = await api("GET", "/subscriptions" + query({ limit: PAGE_SIZE, after, tenant_id: tenant.value.trim() }));
      const ids = page.items.map((e) => e.id);
      const stats = ids.length ? await api("GET", "/endpoint-stats" + query({ ids: ids.join(",") })) : { items: [] };
      const byId = new Map(stats.items.map((x) => [x.endpoint_id, x]));
      // The flow block (strict-order blocking) is only on the one-endpoint read.
      const items = await Promise.all(page.items.map(async (sub) => {
        if (sub.ordering === "strict" && sub.flow === undefined) {
          try { sub = await api("GET", "/subscriptions/" + enc(sub.id)); } catch (e) { /* keep the list */ }
        }
        return { sub, stats: byId.get(sub.id) };
      }));
      return { items, next: page.next };
    }, ({ sub, stats }) => {
      const status = endpointStatus(sub, stats);
      const rate = stats ? stats.success_rate : null;
      return h("tr", { dataset: { id: sub.id, status } },
        h("td", {}, h("a", { href: "#/endpoints/" + enc(sub.id), text: sub.id }), h("div", { class: "muted small mono", text: sub.url })),
        admin ? h("td", { text: sub.tenant_id === null ? "–" : sub.tenant_id }) : null,
        h("td", { class: "small mono", text: (sub.event_types || []).join(", ") }),
        h("td", {}, badge(status)),
        orderCell(sub),
        h("td", { class: "num" + (rate !== null && rate !== undefined && rate < 0.9 ? " low" : ""), title: stats ? stats.succeeded_last_hour + " ok / " + stats.failed_last_hour + " failed" : "" },
          pct(rate), stats ? h("div", { class: "muted small", text: stats.succeeded_last_hour + " / " + (stats.succeeded_last_hour + stats.failed_last_hour) }) : null),
        lastAttemptCell(stats && stats.last_attempt),
        h("td", { class: "num" }, stats && stats.dead_letters ? h("a", { href: "#/deadletters?endpoint_id=" + enc(sub.id), text: String(stats.dead_letters) }) : "0"));
    }, "No endpoints.");
    const run = async () => { try { clearMessages(); await list.show(null); } catch (err) { fail(err); } };
    main.replaceChildren(h("h1", { text: "Endpoints" }), filters, list.el);
    await list.show(null);
  }

  // ------------------------------------------------------------------ one endpoint

  const EDITABLE = [
    ["url", "URL", "text"],
    ["event_types", "Event types (comma-separated)", "list"],
    ["description", "Description", "text"],
    ["timeout_s", "Timeout (s)", "number"],
    ["max_attempts", "Max attempts", "number"],
    ["rate_limit_per_s", "Rate limit (/s)", "number"],
    ["max_in_flight", "Max in flight", "number"],
  ];

  // What a receiver demands (signature scheme, auth, client certificate): secrets are
  // write-only. A read shows them as "****"; a blank secret input sends "****" back, which
  // the API reads as "keep the current value".
  const MASK = "****";
  const AUTH_FIELDS = {
    basic: [["username", "Username", "text"], ["password", "Password", "secret"]],
    oauth2_client_credentials: [
      ["token_url", "Token URL", "text"], ["client_id", "Client id", "text"],
      ["client_secret", "Client secret", "secret"], ["scope", "Scope", "text"],
      ["audience", "Audience", "text"], ["client_auth", "Client auth (basic or body)", "text"]],
  };

  function authText(auth) {
    if (!auth) return "–";
    if (auth.type === "basic") return "Basic: " + auth.username + " (password " + MASK + ")";
    return "OAuth2 client credentials: " + auth.client_id + " at " + auth.token_url + " (secret " + MASK + ", client auth " + auth.client_auth + ")" +
      (auth.scope ? ", scope " + auth.scope : "") + (auth.audience ? ", audience " + auth.audience : "");
  }

  function tlsText(tls) {
    if (!tls) return "–";
    return "client certificate (key " + MASK + ")" + (tls.ca_cert ? ", own CA bundle" : "");
  }

  function receiverForm(sub) {
    const box = h("fieldset", { class: "receiver", id: "receiver" }, h("legend", { text: "Receiver" }));
    const select = (name, options, value) => h("select", { name }, options.map((o) => h("option", { value: o, text: o || "none", selected: o === value })));
    const scheme = select("signature_scheme", ["hmac-sha256", "ed25519", "both"], sub.signature_scheme || "hmac-sha256");
    const auth = sub.auth || null;
    const type = select("auth_type", ["", "basic", "oauth2_client_credentials"], auth ? auth.type : "");
    const fields = h("div", { class: "auth-fields" });
    const inputs = {};
    const draw = () => {
      fields.replaceChildren();
      for (const [f, label, kind] of AUTH_FIELDS[type.value] || []) {
        const same = auth && auth.type === type.value;
        const value = kind === "secret" || !same || auth[f] === null || auth[f] === undefined ? "" : String(auth[f]);
        inputs[f] = h("input", { name: "auth_" + f, type: kind === "secret" ? "password" : "text", autocomplete: "off", value,
          placeholder: kind === "secret" && same ? "unchanged (write-only)" : "" });
        fields.append(h("label", { for: "auth_" + f, text: label }), inputs[f]);
      }
    };
    type.addEventListener("change", draw);
    draw();
    const tls = sub.tls || null;
    const area = (name, value, placeholder) => h("textarea", { name, rows: 3, placeholder, text: value || "" });
    const cert = area("tls_client_cert", tls && tls.client_cert, "PEM certificate (none: no client certificate)");
    const key = area("tls_client_key", "", tls ? "unchanged (write-only)" : "PEM private key");
    const ca = area("tls_ca_cert", tls && tls.ca_cert, "PEM CA bundle for this endpoint (optional)");
    box.append(h("label", { for: "signature_scheme", text: "Signature scheme" }), scheme,
      h("label", { for: "auth_type", text: "Auth" }), type, fields,
      h("label", { for: "tls_client_cert", text: "Client certificate" }), cert,
      h("label", { for: "tls_client_key", text: "Client key" }), key,
      h("label", { for: "tls_ca_cert", text: "CA bundle" }), ca);
    // The changes to send: only what differs from the read (secrets as the mask to keep).
    const changes = () => {
      const out = {};
      if (scheme.value !== (sub.signature_scheme || "hmac-sha256")) out.signature_scheme = scheme.value;
      let a = null;
      if (type.value) {
        a = { type: type.value };
        for (const [f, , kind] of AUTH_FIELDS[type.value]) {
          const raw = inputs[f].value.trim();
          if (kind === "secret") a[f] = raw || MASK;
          else if (raw) a[f] = raw;
        }
      }
      const norm = (x) => x && JSON.stringify(Object.keys(x).sort().filter((k) => x[k] !== null).map((k) => [k, x[k]]));
      if (norm(a) !== norm(auth)) out.auth = a;
      const c = cert.value.trim(), k = key.value.trim(), v = ca.value.trim();
      const t = c ? { client_cert: c, client_key: k || MASK, ca_cert: v || null } : null;
      const tlsNow = tls ? { client_cert: tls.client_cert.trim(), client_key: MASK, ca_cert: tls.ca_cert ? tls.ca_cert.trim() : null } : null;
      if (JSON.stringify(t) !== JSON.stringify(tlsNow)) out.tls = t;
      return out;
    };
    return { el: box, changes };
  }

  function shown(value) {
    if (value === null || value === undefined || value === "") return "–";
    if (Array.isArray(value)) return value.length ? value.join(", ") : "–";
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  async function pageEndpoint(main, id, gen) {
    const [sub, stats, catalog] = await Promise.all([
      api("GET", "/subscriptions/" + enc(id)),
      api("GET", "/endpoint-stats" + query({ ids: id })),
      eventTypes().catch(() => []),  // the picker and examples only: the page works without
    ]);
    if (!current(gen)) return;
    const st = stats.items[0];
    const status = endpointStatus(sub, st);
    const blocked = blockedBy(sub);
    const settings = h("dl", { class: "settings wide", id: "settings" });
    const fields = ["id", "tenant_id", "url", "event_types", "filter", "description", "disabled", "ordering", "timeout_s", "max_attempts", "retry_schedule", "retry_status_codes", "rate_limit_per_s", "max_in_flight", "headers", "signature_scheme", "public_key", "auth", "tls", "created_at", "updated_at"];
    for (const f of fields) {
      if (sub[f] === undefined && ["ordering", "signature_scheme", "public_key", "auth", "tls"].includes(f)) continue;
      const text = f === "tls" ? tlsText(sub.tls) : f === "auth" ? authText(sub.auth) : shown(sub[f]);
      settings.append(h("dt", { text: f }), h("dd", { class: ["url", "id", "public_key"].includes(f) ? "mono" : "", dataset: { field: f }, text }));
    }
    if (sub.flow) settings.append(h("dt", { text: "flow" }), h("dd", { class: "small", dataset: { field: "flow" }, text: flowText(sub.flow) }));

    const secretBox = h("div", { id: "secret-box" });
    const act = (label, cls, fn) => h("button", {
      type: "button", class: cls, text: label,
      onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        clearMessages();
        try { await fn(); } catch (err) { fail(err); } finally { b.disabled = false; }
      },
    });
    const actions = h("div", { class: "actions" },
      act(sub.disabled ? "Enable" : "Disable", sub.disabled ? "primary" : "danger", async () => {
        await api("PATCH", "/subscriptions/" + enc(id), { disabled: !sub.disabled });
        await route();
        showNotice(sub.disabled ? "Endpoint enabled." : "Endpoint disabled.");
      }),
      act("Rotate secret", "", async () => {
        const r = await api("POST", "/subscriptions/" + enc(id) + "/rotate-secret");
        secretBox.replaceChildren(h("div", { class: "secret" },
          h("strong", { text: "New signing secret (shown only now; copy it to the receiver):" }),
          h("div", {}, h("code", { id: "new-secret", text: r.secret })),
          r.public_key ? h("div", {}, "New public key (v1a): ", h("code", { id: "new-public-key", text: r.public_key })) : null,
          h("div", { class: "muted small", text: "The old secret" + (r.public_key ? " and key keep" : " keeps") + " signing for " + Math.round(r.old_secret_valid_for_s / 3600) + " h." })));
      }),
      act("Send test event", "", async () => {
        const r = await api("POST", "/subscriptions/" + enc(id) + "/test");
        showNotice("Test event queued: ", h("a", { id: "test-delivery", href: "#/deliveries/" + enc(r.delivery_id), text: r.delivery_id }));
      }),
      h("a", { href: "#/deadletters?endpoint_id=" + enc(id), text: "Dead letters" }));

    const form = h("form", { class: "edit", id: "edit", hidden: true });
    const inputs = {};
    for (const [f, label, kind] of EDITABLE) {
      const v = sub[f];
      inputs[f] = h("input", { name: f, type: kind === "number" ? "number" : "text", step: "any", value: v === null || v === undefined ? "" : Array.isArray(v) ? v.join(", ") : String(v) });
      form.append(h("label", { for: f, text: label }), inputs[f]);
      if (f === "event_types") form.append(h("span"), typePicker(catalog, inputs[f]));
    }
    inputs.filter = h("textarea", { name: "filter", id: "filter-input", class: "json", placeholder: '{"data": {"amount": {"$gt": 100}}}' });
    inputs.filter.value = sub.filter ? JSON.stringify(sub.filter, null, 2) : "";
    form.append(h("label", { for: "filter-input", text: "Filter (JSON, empty: none)" }), inputs.filter);
    const receiver = receiverForm(sub);
    form.append(receiver.el);
    form.append(h("div", { class: "buttons" },
      h("button", { type: "submit", class: "primary", text: "Save" }),
      h("button", { type: "button", text: "Cancel", onclick: () => { form.hidden = true; } })));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearMessages();
      const changes = {};
      for (const [f, , kind] of EDITABLE) {
        const raw = inputs[f].value.trim();
        let value = raw === "" ? null : raw;
        if (kind === "number" && value !== null) value = Number(value);
        if (kind === "list") value = raw.split(",").map((x) => x.trim()).filter(Boolean);
        if (JSON.stringify(value) !== JSON.stringify(sub[f] === undefined ? null : sub[f])) changes[f] = value;
      }
      Object.assign(changes, receiver.changes());
      try {
        const filter = parseFilter(inputs.filter.value);
        if (JSON.stringify(filter) !== JSON.stringify(sub.filter === undefined ? null : sub.filter)) changes.filter = filter;
      } catch (err) { return showError(err); }
      try {
        const saved = Object.keys(changes).length ? await api("PATCH", "/subscriptions/" + enc(id), changes) : null;
        await route();
        showNotice(Object.keys(changes).length ? "Saved: " + Object.keys(changes).join(", ") : "Nothing changed.",
          saved && saved.warnings && saved.warnings.length ? h("div", { id: "warnings", class: "small", text: "Warning: " + saved.warnings.join("; ") }) : null);
      } catch (err) { fail(err); }
    });
    actions.prepend(h("button", { type: "button", text: "Edit", onclick: () => { form.hidden = !form.hidden; } }));

    const operational = h("div", { id: "operational-events" }, h("p", { class: "muted", text: "Loading…" }));
    const statsCard = h("div", { class: "grid" },
      stat("Status", badge(status)),
      stat("Success (1h)", pct(st ? st.success_rate : null)),
      stat("Attempts (1h)", st ? String(st.succeeded_last_hour + st.failed_last_hour) : "0"),
      stat("Dead letters", st ? String(st.dead_letters) : "0", st && st.dead_letters > 0));

    const outcome = h("select", { name: "status" }, ["", "succeeded", "retrying", "failed"].map((o) => h("option", { value: o, text: o || "any" })));
    const since = h("input", { name: "since", placeholder: "2h or 2026-12-01T10:00Z", size: 22 });
    const until = h("input", { name: "until", placeholder: "ISO-8601 or age", size: 22 });
    const attempts = pagedTable("attempts", ["Time", "Delivery", "Event", "#Attempt", "Outcome", "#Status", "#Duration", "Error", "Response body"], (after) =>
      api("GET", "/subscriptions/" + enc(id) + "/attempts" + query({ limit: PAGE_SIZE, after, status: outcome.value, since: since.value.trim(), until: until.value.trim() })),
    (a) => h("tr", { dataset: { delivery: a.delivery_id, outcome: a.outcome } },
      timeCell(a.attempted_at),
      h("td", { class: "mono small" }, h("a", { href: "#/deliveries/" + enc(a.delivery_id), text: a.delivery_id })),
      h("td", { class: "mono small", text: a.event_type || "" }),
      h("td", { class: "num", text: String(a.attempt) }),
      h("td", {}, badge(a.outcome)),
      h("td", { class: "num mono", text: a.status_code === null ? "–" : String(a.status_code) }),
      h("td", { class: "num", text: Math.round(a.duration_ms) + " ms" }),
      h("td", { class: "small", text: a.error || "" }),
      bodyCell(a.response_body)), "No attempts match (the log keeps the latest attempts per endpoint).");
    const filters = h("form", { class: "filters", id: "attempt-filters", onsubmit: async (ev) => {
      ev.preventDefault();
      clearMessages();
      try { await attempts.show(null); } catch (err) { fail(err); }
    } },
      h("label", {}, "Outcome", outcome), h("label", {}, "Since", since), h("label", {}, "Until", until),
      h("button", { type: "submit", text: "Apply" }));

    main.replaceChildren(
      h("h1", {}, "Endpoint ", h("span", { class: "mono", text: sub.id }), " ", badge(status),
        sub.ordering === "strict" ? [" ", badge("strict", "strict order")] : null,
        blocked ? [" ", h("span", { id: "blocked" }, badge("blocked", "blocked" + (blocked.since ? " since " + fmtTime(blocked.since) : "")))] : null),
      statsCard, actions, secretBox, form,
      h("div", { class: "row" }, h("div", { class: "card" }, h("h2", { text: "Settings" }), settings),
        filterCheck(sub, catalog, inputs.filter)),
      h("h2", { text: "Attempt log" }), filters, attempts.el,
      h("h2", { text: "Operational events" }), operational);
    await attempts.show(null);
    // What webhooks.operational said about it (disabled, failing, ...): the page works without.
    try {
      const ops = await api("GET", "/subscriptions/" + enc(id) + "/operational-events");
      if (current(gen)) operational.replaceChildren(opsTable(ops.items));
    } catch (err) { operational.replaceChildren(h("p", { class: "muted", text: "Not available now." })); }
  }

  function opsTable(items) {
    if (!items.length) return h("p", { class: "muted", text: "None recorded." });
    const facts = (d) => ["reason", "attempt_count", "last_status", "last_error", "delivery_id", "version"]
      .filter((k) => d[k] !== undefined && d[k] !== null).map((k) => k + ": " + d[k]).join(", ");
    return h("table", {}, h("thead", {}, h("tr", {}, ["Time", "Type", "Facts", "Id"].map((t) => h("th", { text: t })))),
      h("tbody", {}, items.map((e) => h("tr", { dataset: { type: e.type } },
        timeCell(e.occurred_at),
        h("td", { class: "mono small", text: e.type }),
        h("td", { class: "small", text: facts(e.data || {}) }),
        h("td", { class: "mono small muted", text: e.id })))));
  }

  // ------------------------------------------------------------------ filters and event types

  // The whole catalog (every token reads it), following the pages.
  async function eventTypes() {
    const all = [];
    let after = null;
    do {
      const page = await api("GET", "/event-types" + query({ limit: 500, after }));
      all.push(...page.items);
      after = page.next;
    } while (after);
    return all;
  }

  // An error shaped like the API's, for input the page itself refuses.
  function parseFilter(text) {
    const raw = text.trim();
    if (!raw) return null;
    let value;
    try { value = JSON.parse(raw); } catch (e) { throw new ApiError(0, "invalid", "the filter is not valid JSON (" + e.message + ")", "filter"); }
    if (value === null || typeof value !== "object" || Array.isArray(value)) throw new ApiError(0, "invalid", "the filter must be a JSON object", "filter");
    return Object.keys(value).length ? value : null;
  }

  // A select of the catalogued types; picking one adds it to the comma-separated input.
  function typePicker(catalog, input) {
    const select = h("select", { id: "type-picker", name: "type_picker", "aria-label": "Add an event type from the catalog" },
      h("option", { value: "", text: catalog.length ? "Add an event type from the catalog…" : "(the event-type catalog is empty)" }),
      catalog.map((t) => h("option", { value: t.name, text: t.name + (t.deprecated ? " (deprecated)" : "") + (t.description ? " – " + t.description : "") })));
    select.addEventListener("change", () => {
      const name = select.value;
      if (!name) return;
      const have = input.value.split(",").map((x) => x.trim()).filter(Boolean);
      if (!have.includes(name)) input.value = [...have, name].join(", ");
      select.value = "";
    });
    return select;
  }

  // A pasted webhook body ({id, type, timestamp, data}) or envelope is read as the event;
  // anything else as its data.
  function pastedEvent(value) {
    if (value === null || typeof value !== "object" || Array.isArray(value) || !("data" in value || "type" in value)) return { data: value };
    const known = ["id", "type", "tenant_id", "source", "occurred_at", "data", "headers"];
    const event = {};
    for (const k of known) if (k in value) event[k] = value[k];
    if (!("occurred_at" in event) && typeof value.timestamp === "string") event.occurred_at = value.timestamp;
    return event;
  }

  function firstExample(sub, catalog) {
    const types = sub.event_types || [];
    const glob = (p) => new RegExp("^" + p.replace(/[.+^${}()|\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".") + "$");
    const found = catalog.find((t) => t.examples && t.examples.length && types.includes(t.name)) ||
      catalog.find((t) => t.examples && t.examples.length && types.some((p) => glob(p).test(t.name)));
    return found ? { type: found.name, tenant_id: sub.tenant_id, data: found.examples[0] } : { type: types[0] || "", tenant_id: sub.tenant_id, data: {} };
  }

  // "Would this event match?": the server's matcher (POST /filter-check) on the filter in
  // the edit box (the saved one until edited) and a pasted event.
  function filterCheck(sub, catalog, filterInput) {
    const pasted = h("textarea", { id: "check-event", class: "json", "aria-label": "Event to check" });
    pasted.value = JSON.stringify(firstExample(sub, catalog), null, 2);
    const result = h("div", { id: "filter-result", class: "small" });
    const check = h("button", { type: "button", id: "check-filter", text: "Check", onclick: async () => {
      clearMessages();
      result.textContent = "";
      try {
        let value;
        try { value = JSON.parse(pasted.value); } catch (e) { throw new ApiError(0, "invalid", "the event is not valid JSON (" + e.message + ")", "event"); }
        const r = await api("POST", "/filter-check", { filter: parseFilter(filterInput.value), event: pastedEvent(value) });
        result.dataset.matches = String(r.matches);
        result.replaceChildren(r.matches ? badge("matches", "matches") : badge("nomatch", "does not match"),
          " ", r.matches ? "this event would be delivered (if its type and tenant match too)" : "the filter refuses this event");
      } catch (err) { fail(err); }
    } });
    return h("div", { class: "card", id: "filter-card" }, h("h2", { text: "Filter" }),
      sub.filter ? h("pre", { class: "json", id: "filter-shown", text: JSON.stringify(sub.filter, null, 2) }) : h("p", { class: "muted", id: "filter-shown", text: "No filter: every event of its types is delivered." }),
      h("h2", { text: "Would this event match?" }),
      h("p", { class: "muted small", text: "Paste an event (or a webhook body, or just its data). The check uses the filter in the Edit form, saved or not." }),
      pasted, h("div", { class: "actions" }, check, result));
  }

  // A JSON Schema as rows: each property with its type, whether required, its constraints.
  function schemaRows(schema, path, depth, required, rows) {
    if (!schema || typeof schema !== "object") return rows;
    const kind = Array.isArray(schema.type) ? schema.type.join(" | ") : (schema.type || (schema.$ref ? "→ " + schema.$ref : schema.enum ? "enum" : "any"));
    const skip = new Set(["type", "properties", "items", "required", "description", "title", "$schema", "$id", "$defs", "additionalProperties"]);
    const rules = Object.entries(schema).filter(([k]) => !skip.has(k)).map(([k, v]) => k + ": " + (typeof v === "object" ? JSON.stringify(v) : String(v)));
    if (schema.additionalProperties === false) rules.push("no other properties");
    if (path) {
      rows.push(h("tr", { dataset: { path } },
        h("td", { class: "mono small path", text: path }),
        h("td", { class: "small", text: kind }),
        h("td", { class: "small", text: required ? "required" : "" }),
        h("td", { class: "small mono", text: rules.join(", ") }),
        h("td", { class: "small", text: schema.description || schema.title || "" })));
    }
    const needed = new Set(schema.required || []);
    for (const [name, sub] of Object.entries(schema.properties || {})) schemaRows(sub, path ? path + "." + name : name, path ? depth + 1 : 0, needed.has(name), rows);
    if (schema.items && typeof schema.items === "object") schemaRows(schema.items, (path || "data") + "[]", path ? depth + 1 : 0, false, rows);
    return rows;
  }

  function schemaView(schema) {
    if (!schema) return h("p", { class: "muted", text: "No schema: any data." });
    const rows = schemaRows(schema, "", 0, false, []);
    return h("div", {},
      schema.description ? h("p", { text: schema.description }) : null,
      rows.length ? h("table", { class: "schema", id: "schema-table" },
        h("thead", {}, h("tr", {}, ["Field (in data)", "Type", "", "Constraints", "Description"].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows)) : h("p", { class: "muted", text: "Type: " + (schema.type || "any") }),
      h("details", {}, h("summary", { text: "JSON Schema" }), h("pre", { class: "json", id: "schema-json", text: JSON.stringify(schema, null, 2) })));
  }

  async function pageEventTypes(main, name, gen) {
    const all = await eventTypes();
    if (!current(gen)) return;
    if (name) {
      const t = all.find((x) => x.name === name);
      if (!t) throw new ApiError(404, "not_found", "no event type " + JSON.stringify(name));
      main.replaceChildren(
        h("h1", {}, "Event type ", h("span", { class: "mono", text: t.name }), " ",
          t.deprecated ? badge("deprecated") : null, " ", t.enforce ? badge("enforced", "schema enforced") : null),
        h("p", { id: "type-description", text: t.description || "" }),
        h("p", {}, h("a", { href: "#/event-types", text: "‹ All event types" })),
        h("h2", { text: "Data schema" }), h("div", { class: "card" }, schemaView(t.schema)),
        h("h2", { text: "Examples" }),
        h("div", { id: "examples" }, t.examples.length ? t.examples.map((e, i) => h("pre", { class: "json example", dataset: { index: String(i) }, text: JSON.stringify(e, null, 2) })) : h("p", { class: "muted", text: "None." })));
      return;
    }
    const rows = all.map((t) => h("tr", { dataset: { name: t.name } },
      h("td", { class: "mono" }, h("a", { href: "#/event-types/" + enc(t.name), text: t.name })),
      h("td", { text: t.description || "" }),
      h("td", {}, t.deprecated ? badge("deprecated") : null, " ", t.enforce ? badge("enforced", "enforced") : null),
      h("td", { class: "small", text: t.schema ? Object.keys(t.schema.properties || {}).join(", ") || (t.schema.type || "schema") : "–" }),
      h("td", { class: "num", text: String(t.examples.length) })));
    main.replaceChildren(h("h1", { text: "Event types" }),
      h("p", { class: "muted small", text: "The event types this service sends, with the schema of their data. Subscribe to them by name or pattern on an endpoint." }),
      h("table", { id: "event-types" },
        h("thead", {}, h("tr", {}, ["Name", "Description", "", "Data fields", "#Examples"].map((t) => h("th", { class: t.startsWith("#") ? "num" : "", text: t.replace(/^#/, "") })))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 5, class: "muted", text: "The catalog is empty." })))));
  }

  function stat(label, value, bad) {
    return h("div", { class: "card stat" + (bad ? " bad" : "") }, h("div", { class: "label", text: label }), h("div", { class: "value" }, value));
  }

  function bodyCell(body) {
    if (!body) return h("td", { class: "muted", text: "" });
    if (body.length <= 60) return h("td", {}, h("code", { class: "small", text: body }));
    return h("td", {}, h("details", {}, h("summary", { text: body.slice(0, 50) + "…" }), h("pre", { class: "body", text: body })));
  }

  // ------------------------------------------------------------------ one delivery

  async function pageDelivery(main, id, gen) {
    let d;
    for (let tries = 1; ; tries++) {
      try {
        d = await api("GET", "/deliveries/" + enc(id));
        break;
      } catch (err) {
        // The status store reads a delivery from Kafka a moment after it was queued (a test
        // event just sent): a 404 is looked up again for a few seconds before it is shown.
        if (!(err instanceof ApiError) || err.status !== 404 || tries >= DELIVERY_LOOKUPS) throw err;
        if (!current(gen)) return;
        main.replaceChildren(h("p", { class: "muted", id: "delivery-waiting", text: "Not in the status yet; looking again…" }));
        await new Promise((resolve) => setTimeout(resolve, 500));
        if (!current(gen)) return;
      }
    }
    if (!current(gen)) return;
    const rows = d.attempts.map((a) => h("tr", { dataset: { outcome: a.outcome } },
      timeCell(a.attempted_at),
      h("td", { class: "num", text: String(a.attempt) }),
      h("td", {}, badge(a.outcome)),
      h("td", { class: "num mono", text: a.status_code === null ? "–" : String(a.status_code) }),
      h("td", { class: "num", text: Math.round(a.duration_ms) + " ms" }),
      h("td", { class: "small", text: a.error || "" }),
      bodyCell(a.response_body)));
    const dl = d.dead_letter;
    const replay = d.status === "dead_lettered" ? h("button", { type: "button", class: "primary", id: "replay-one", text: "Replay", onclick: async () => {
      clearMessages();
      try {
        const r = await replayOne(d.delivery_id, d.endpoint_id, dl && dl.dead_lettered_at);
        showNotice("Replay: " + r.requeued + " re-queued.");
        setTimeout(() => { if (current(gen)) refresh(); }, 500);
      } catch (err) { fail(err); }
    } }) : null;
    const refresh = async () => {
      try {
        const again = await api("GET", "/deliveries/" + enc(id));
        if (current(gen) && (again.status !== d.status || again.attempts.length !== d.attempts.length)) route();
      } catch (err) { if (current(gen)) fail(err); }
    };
    main.replaceChildren(
      h("h1", {}, "Delivery ", h("span", { class: "mono", text: d.delivery_id }), " ", h("span", { id: "delivery-status" }, badge(d.status))),
      h("dl", { class: "settings card" },
        h("dt", { text: "endpoint" }), h("dd", {}, h("a", { href: "#/endpoints/" + enc(d.endpoint_id), text: d.endpoint_id })),
        h("dt", { text: "status" }), h("dd", { text: d.status }),
        h("dt", { text: "attempts" }), h("dd", { text: String(d.attempts.length) }),
        dl ? [h("dt", { text: "dead-lettered" }), h("dd", { text: fmtTime(dl.dead_lettered_at) + " (" + dl.reason + ")" + (dl.last_error ? ": " + dl.last_error : "") })] : null),
      h("div", { class: "actions" }, replay, h("button", { type: "button", text: "Refresh", onclick: () => route() })),
      h("h2", { text: "Attempts" }),
      h("table", { id: "delivery-attempts" }, h("thead", {}, h("tr", {}, ["Time", "#", "Outcome", "Status", "Duration", "Error", "Response body"].map((t) => h("th", { text: t })))),
        h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 7, class: "muted", text: "No attempt yet." })))));
    // Live while it can still change.
    every(2000, refresh);
  }

  function replayOne(deliveryId, endpointId, deadLetteredAt) {
    const body = { source: "deadletter", delivery_id: deliveryId, endpoint_id: endpointId };
    const t = Date.parse(deadLetteredAt || "");
    // The dead-letter record is written when the delivery is dead-lettered: scan from just before.
    if (!Number.isNaN(t)) body.since = new Date(t - 5 * 60 * 1000).toISOString();
    return api("POST", "/replay", body);
  }

  // ------------------------------------------------------------------ dead letters

  function hashParams() {
    const q = location.hash.split("?")[1] || "";
    return new URLSearchParams(q);
  }

  async function pageDeadLetters(main, gen) {
    const params = hashParams();
    const admin = state.who.admin;
    const endpoint = h("input", { name: "endpoint_id", placeholder: "any endpoint", value: params.get("endpoint_id") || "" });
    const tenant = h("input", { name: "tenant_id", placeholder: "all tenants" });
    const since = h("input", { name: "since", placeholder: "2h or 2026-12-01T10:00Z", size: 22 });
    const until = h("input", { name: "until", placeholder: "ISO-8601 or age", size: 22 });
    const dry = h("input", { type: "checkbox", name: "dry_run" });
    const list = pagedTable("deadletters", ["Dead-lettered", "Delivery", "Endpoint", ...(admin ? ["Tenant"] : []), "Event", "Reason", "#Attempts", "Last error", ""], (after) =>
      api("GET", "/deadletters" + query({ limit: PAGE_SIZE, after, endpoint_id: endpoint.value.trim(), tenant_id: tenant.value.trim(), since: since.value.trim(), until: until.value.trim() })),
    (d) => h("tr", { dataset: { delivery: d.delivery_id } },
      timeCell(d.dead_lettered_at),
      h("td", { class: "mono small" }, h("a", { href: "#/deliveries/" + enc(d.delivery_id), text: d.delivery_id })),
      h("td", { class: "mono small" }, h("a", { href: "#/endpoints/" + enc(d.endpoint_id), text: d.endpoint_id })),
      admin ? h("td", { text: d.tenant_id === null ? "–" : d.tenant_id }) : null,
      h("td", { class: "mono small", text: d.event_type || "" }),
      h("td", { class: "small", text: d.reason || "" }),
      h("td", { class: "num", text: d.attempts === null ? "–" : String(d.attempts) }),
      h("td", { class: "small" }, d.last_error || (d.last_status_code ? "HTTP " + d.last_status_code : "")),
      h("td", {}, h("button", { type: "button", class: "replay", text: "Replay", onclick: async (ev) => {
        const b = ev.currentTarget;
        b.disabled = true;
        clearMessages();
        try {
          const r = await replayOne(d.delivery_id, d.endpoint_id, d.dead_lettered_at);
          showNotice("Replayed ", h("a", { href: "#/deliveries/" + enc(d.delivery_id), text: d.delivery_id }), ": " + r.requeued + " re-queued" + (r.skipped_succeeded ? ", " + r.skipped_succeeded + " already succeeded" : "") + ".");
          // Re-queued (or succeeded meanwhile): it leaves the list now, as the page says.
          if (r.requeued || r.skipped_succeeded) b.closest("tr").remove();
          else b.disabled = false;
        } catch (err) { fail(err); b.disabled = false; }
      } }))), "No dead letters in the status retention.");
    const run = async () => { clearMessages(); try { await list.show(null); } catch (err) { fail(err); } };
    const replayRange = async () => {
      clearMessages();
      const body = { source: "deadletter", dry_run: dry.checked };
      if (endpoint.value.trim()) body.endpoint_id = endpoint.value.trim();
      if (tenant.value.trim()) body.tenant_id = tenant.value.trim();
      if (since.value.trim()) body.since = since.value.trim();
      if (until.value.trim()) body.until = until.value.trim();
      try {
        const r = await api("POST", "/replay", body);
        showNotice((r.dry_run ? "Dry run: would re-queue " + r.matched : "Re-queued " + r.requeued) + " (scanned " + r.scanned + ", already succeeded " + r.skipped_succeeded + ").");
        if (!r.dry_run) await list.show(null);
      } catch (err) { fail(err); }
    };
    const filters = h("form", { class: "filters", id: "dl-filters", onsubmit: (ev) => { ev.preventDefault(); run(); } },
      h("label", {}, "Endpoint", endpoint), admin ? h("label", {}, "Tenant", tenant) : null,
      h("label", {}, "Since", since), h("label", {}, "Until", until),
      h("button", { type: "submit", text: "Filter" }),
      h("button", { type: "button", id: "replay-range", class: "primary", text: "Replay all matching", onclick: replayRange }),
      h("label", { class: "small" }, h("span", {}, dry, " dry run")));
    main.replaceChildren(h("h1", { text: "Dead letters" }),
      h("p", { class: "muted small", text: "Deliveries that exhausted their retries (or were refused), within the status retention. Replay sends them again with the same webhook-id; a replayed one leaves this list." }),
      filters, list.el);
    await list.show(null);
  }

  // ------------------------------------------------------------------ rejected input

  async function pageRejected(main, gen) {
    const params = hashParams();
    const admin = state.who.admin;
    const topic = h("input", { name: "topic", placeholder: "any topic", value: params.get("topic") || "" });
    const reason = h("input", { name: "reason", placeholder: "e.g. unknown_schema", value: params.get("reason") || "" });
    const tenant = h("input", { name: "tenant_id", placeholder: "all tenants" });
    const since = h("input", { name: "since", placeholder: "2h or 2026-12-01T10:00Z", size: 22 });
    const until = h("input", { name: "until", placeholder: "ISO-8601 or age", size: 22 });
    const list = pagedTable("rejected", ["Rejected", "Reason", "Source", ...(admin ? ["Tenant"] : []), "Preview"], (after) =>
      api("GET", "/rejected" + query({ limit: PAGE_SIZE, after, topic: topic.value.trim(), reason: reason.value.trim(), tenant_id: tenant.value.trim(), since: since.value.trim(), until: until.value.trim() })),
    (r) => h("tr", { dataset: { code: r.code } },
      timeCell(r.rejected_at),
      h("td", { class: "small reason" }, badge("bad", r.code), " ", r.reason),
      h("td", { class: "mono small source", text: r.source.topic + " [" + r.source.partition + "] @" + r.source.offset }),
      admin ? h("td", { text: r.tenant_id === null ? "–" : r.tenant_id }) : null,
      h("td", { class: "mono small preview", text: r.preview === null ? "(no value)" : r.preview + (r.preview_truncated ? " …" : "") })),
    "No rejected input in the status retention.");
    const run = async () => { clearMessages(); try { await list.show(null); } catch (err) { fail(err); } };
    const filters = h("form", { class: "filters", id: "rejected-filters", onsubmit: (ev) => { ev.preventDefault(); run(); } },
      h("label", {}, "Topic", topic), h("label", {}, "Reason", reason), admin ? h("label", {}, "Tenant", tenant) : null,
      h("label", {}, "Since", since), h("label", {}, "Until", until),
      h("button", { type: "submit", text: "Filter" }));
    main.replaceChildren(h("h1", { text: "Rejected input" }),
      h("p", { class: "muted small", text: "Records on events.* (and the worker's own topics) that were refused, with the reason and where they came from; the whole record stays on webhooks.rejected. A tenant sees the ones whose tenant could be read from them." }),
      filters, list.el);
    if (current(gen)) await list.show(null);
  }

  // ------------------------------------------------------------------ overview

  // Minutes before the first with any attempt are left out, down to a 15-minute window.
  function trimmed(minutes) {
    const first = minutes.findIndex((m) => m.succeeded + m.failed > 0);
    const start = first < 0 ? minutes.length - 15 : Math.min(first, minutes.length - 15);
    return minutes.slice(Math.max(0, start));
  }

  function chart(all) {
    const minutes = trimmed(all);
    const W = 720, H = 200, L = 40, B = 22, T = 10;
    const n = minutes.length || 1;
    const max = Math.max(1, ...minutes.map((m) => m.succeeded + m.failed));
    const bw = (W - L) / n;
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const g = s("g");
    minutes.forEach((m, i) => {
      const x = L + i * bw + 1;
      const okTop = y(m.succeeded);
      const badTop = y(m.succeeded + m.failed);
      const label = fmtTime(m.at) + ": " + m.succeeded + " succeeded, " + m.failed + " failed";
      if (m.succeeded) g.append(s("rect", { class: "bar-ok", x, y: okTop, width: Math.max(1, bw - 2), height: H - B - okTop }, s("title", { text: label })));
      if (m.failed) g.append(s("rect", { class: "bar-bad", x, y: badTop, width: Math.max(1, bw - 2), height: okTop - badTop }, s("title", { text: label })));
    });
    const first = minutes.length ? fmtTime(minutes[0].at).slice(11, 16) : "";
    const last = minutes.length ? fmtTime(minutes[minutes.length - 1].at).slice(11, 16) : "";
    return s("svg", { class: "chart", id: "overview-chart", viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "attempts per minute, last hour" },
      s("line", { class: "axis", x1: L, y1: H - B, x2: W, y2: H - B }),
      s("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }),
      s("text", { x: L - 6, y: T + 10, "text-anchor": "end", text: String(max) }),
      s("text", { x: L - 6, y: H - B, "text-anchor": "end", text: "0" }),
      s("text", { x: L, y: H - 6, text: first + " UTC" }),
      s("text", { x: W, y: H - 6, "text-anchor": "end", text: last }),
      g);
  }

  async function pageOverview(main, gen) {
    const admin = state.who.admin;
    const tenant = h("input", { name: "tenant_id", placeholder: "all tenants" });
    const body = h("div", { id: "overview" });
    const load = async () => {
      const o = await api("GET", "/overview" + query({ tenant_id: tenant.value.trim() }));
      if (!current(gen)) return;
      const peak = Math.max(0, ...o.minutes.map((m) => m.succeeded)) / 60;
      body.replaceChildren(
        h("div", { class: "grid" },
          stat("Deliveries / s (last minute)", h("span", { id: "stat-rate", text: o.deliveries_per_s.toFixed(2) })),
          stat("Succeeded (1h)", h("span", { id: "stat-ok", text: String(o.succeeded_last_hour) })),
          stat("Failed attempts (1h)", h("span", { id: "stat-failed", text: String(o.failed_last_hour) }), o.failed_last_hour > 0),
          stat("Dead letters now", h("a", { id: "stat-dlq", href: "#/deadletters", text: String(o.dead_letters) }), o.dead_letters > 0)),
        h("h2", { text: "Attempts per minute (up to the last hour)" }),
        h("div", { class: "card" }, chart(o.minutes),
          h("div", { class: "legend" }, h("span", {}, h("i", { class: "ok" }), "succeeded"), h("span", {}, h("i", { class: "bad" }), "failed (retried or dead-lettered)"),
            h("span", { text: "peak " + peak.toFixed(2) + " deliveries/s" }))),
        h("h2", { text: "Disabled endpoints (" + (o.disabled_total || 0) + ")" }),
        h("ul", { id: "disabled-endpoints" }, ...(o.disabled_endpoints || []).map((e) =>
          h("li", {}, h("a", { href: "#/endpoints/" + enc(e.id), text: e.id }),
            e.tenant_id ? h("span", { class: "muted", text: " " + e.tenant_id }) : null))));
    };
    const filters = admin ? h("form", { class: "filters", onsubmit: async (ev) => {
      ev.preventDefault();
      clearMessages();
      try { await load(); } catch (err) { fail(err); }
    } }, h("label", {}, "Tenant", tenant), h("button", { type: "submit", text: "Filter" })) : null;
    main.replaceChildren(h("h1", { text: "Overview" }), filters, body);
    await load();
    every(5000, async () => {
      try { await load(); } catch (err) { if (current(gen)) fail(err); }
    });
  }

  // ------------------------------------------------------------------ start

  // #token=<token>: take it, then drop it from the address bar and the history.
  function tokenFromHash() {
    const m = location.hash.match(/^#token=([^&]+)/);
    if (!m) return null;
    history.replaceState(null, "", location.pathname + location.search + "#/endpoints");
    try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
  }

  // A sign-in link for another token in a tab already signed in: ask first, so that a
  // link from someone else never silently swaps the session (and what it acts as).
  function mayReplace(current, fresh) {
    if (!current || current === fresh) return true;
    const who = state.who ? (state.who.admin ? "admin" : "tenant " + state.who.tenant_id) : null;
    return window.confirm(
      "This link signs in with another token." +
      (who ? " You are signed in as " + who + "." : "") +
      " Sign out of the current session and use the new token?");
  }

  function boot() {
    const stored = sessionStorage.getItem(TOKEN_KEY);
    const linked = tokenFromHash();
    const token = linked && mayReplace(stored, linked) ? linked : stored;
    $("#signout").addEventListener("click", () => signOut());
    window.addEventListener("hashchange", () => {
      const fresh = tokenFromHash();  // a sign-in link opened in a tab already signed in
      if (fresh && mayReplace(state.token, fresh)) signIn(fresh);
      else if (state.who) route();
    });
    if (token) signIn(token);
    else renderSignIn();
  }

  boot();
})();
