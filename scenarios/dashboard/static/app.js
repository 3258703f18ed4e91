// The caas-sim dashboard: what the server's event stream says, drawn; the clock buttons and the
// fault form call the dashboard's small API, which speaks the admin protocol to the services.
// No library: DOM and SVG by hand (text always as text nodes, never as HTML).
"use strict";

const state = {
  services: {},      // name -> base URL
  absent: {},        // name -> routes it does not serve
  health: {},        // name -> {health} | {absent} | {error}
  rules: {},         // name -> {rules} | {absent} | {error}
  actions: {},       // name -> [{name, kind, description, params}]
  entries: [],       // journal entries with their drawing (`draw`), sorted by time
  byId: new Map(),
  selected: null,
  vin: null,         // the vehicle page's VIN, when it is shown
  epoch: null,       // the server's hub: its journal ids are its own
};
const MAX_ENTRIES = 4000;
const $ = (sel) => document.querySelector(sel);

// --- DOM helpers ------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
function notice(text) {
  const box = h("div", {}, text);
  $("#notices").append(box);
  setTimeout(() => box.remove(), 9000);
}
function duration(secs) {
  secs = Math.round(secs);
  const parts = [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]].map(([n, u]) => {
    const q = Math.floor(secs / n); secs -= q * n; return q ? `${q}${u}` : "";
  }).filter(Boolean);
  return parts.join("") || "0s";
}
function shortTime(iso) { return iso ? iso.slice(11, 19) : "-"; }
function day(iso) { return iso ? iso.slice(0, 10) : ""; }
async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) { init.headers["Content-Type"] = "application/json"; init.body = JSON.stringify(body); }
  const resp = await fetch(path, init);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const why = data && (data.detail || data.title) ? [data.title, data.detail].filter(Boolean).join(": ") : `HTTP ${resp.status}`;
    const violations = data && Array.isArray(data.violations)
      ? " (" + data.violations.map((v) => `${v.pointer || v.location}: ${v.message}`).join("; ") + ")" : "";
    throw new Error(why + violations);
  }
  return data;
}

// --- the event stream -------------------------------------------------------------------------
function connect() {
  const events = new EventSource("/api/events");
  events.onopen = () => { const l = $("#live"); l.textContent = "live"; l.className = "live"; };
  events.onerror = () => { const l = $("#live"); l.textContent = "reconnecting…"; l.className = "live off"; };
  events.addEventListener("hello", (ev) => {
    const data = JSON.parse(ev.data);
    if (state.epoch && data.epoch !== state.epoch) {  // the dashboard restarted: its ids start again
      state.entries = []; state.byId.clear(); scheduleDiagram();
    }
    state.epoch = data.epoch;
    state.services = data.services; state.absent = data.absent || {};
    renderServices(); renderFaultServices();
  });
  events.addEventListener("health", (ev) => { state.health = JSON.parse(ev.data); renderServices(); renderClock(); });
  events.addEventListener("faults", (ev) => { state.rules = JSON.parse(ev.data); renderRules(); renderFaultServices(); });
  events.addEventListener("notice", (ev) => notice(JSON.parse(ev.data).text));
  events.addEventListener("journal", (ev) => addEntries(JSON.parse(ev.data)));
}

function entryKey(e) { return [e.vt, e.wall || "", e.service || "", String(e.seq).padStart(10, "0")].join("|"); }
function addEntries(batch) {
  let touchesVin = false;
  for (const e of batch) {
    if (state.byId.has(e.id)) continue;
    e._key = entryKey(e);
    state.byId.set(e.id, e);
    state.entries.push(e);
    if (state.vin && (e.entities || {}).vin === state.vin) touchesVin = true;
  }
  state.entries.sort((a, b) => (a._key < b._key ? -1 : a._key > b._key ? 1 : 0));
  while (state.entries.length > MAX_ENTRIES) state.byId.delete(state.entries.shift().id);
  scheduleDiagram();
  if (touchesVin) scheduleVehicle();
}

// --- services and clock -----------------------------------------------------------------------
function renderServices() {
  const body = $("#services tbody");
  body.replaceChildren();
  for (const [name, url] of Object.entries(state.services)) {
    const got = state.health[name] || {};
    const health = got.health;
    let st;
    if (health) st = h("span", { class: "state-ok" }, health.status);
    else if (got.absent) st = h("span", { class: "state-absent", title: "serves no /__admin/health" }, "no health route");
    else if (got.error) st = h("span", { class: "state-bad", title: got.error }, "down");
    else st = h("span", { class: "state-absent" }, "…");
    const clock = health ? health.clock : null;
    body.append(h("tr", { "data-service": name },
      h("td", {}, h("a", { href: url + "/__admin/health", target: "_blank", title: url }, name)),
      h("td", {}, st),
      h("td", { class: health && health.busy > 0 ? "busy" : "" }, health ? health.busy : "-"),
      h("td", { class: "mono" }, clock ? `${shortTime(clock.now)} ${clock.mode === "scaled" ? "×" + clock.scale : ""}` : "-"),
      h("td", { class: "mono" }, health && health.nextDue ? `${day(health.nextDue) !== day(clock.now) ? day(health.nextDue).slice(5) + " " : ""}${shortTime(health.nextDue)}` : "-"),
      h("td", {}, health ? health.pendingTimers : "-")));
  }
}

function worldClock() {
  const clocks = Object.values(state.health).filter((g) => g.health).map((g) => g.health);
  if (!clocks.length) return null;
  const now = clocks.map((x) => x.clock.now).sort().at(-1);
  const modes = [...new Set(clocks.map((x) => x.clock.mode === "scaled" ? `scaled ×${x.clock.scale}` : x.clock.mode))];
  const dues = clocks.map((x) => x.nextDue).filter(Boolean).sort();
  return { now, modes, next: dues[0] || null, busy: clocks.reduce((n, x) => n + x.busy, 0) };
}

let moving = false;
function renderClock() {
  const world = worldClock();
  $("#clock-now").textContent = world ? world.now.replace("T", " ").replace(".000Z", "Z") : "…";
  $("#clock-mode").textContent = world ? world.modes.join(", ") : "";
  const frozen = !world || world.modes.every((m) => m === "real");
  for (const b of document.querySelectorAll("[data-advance]")) b.disabled = moving || frozen;
  const next = $("#next-due");
  next.disabled = moving || frozen || !(world && world.next);
  next.textContent = world && world.next ? `next event (${day(world.next) !== day(world.now) ? day(world.next).slice(5) + " " : ""}${shortTime(world.next)})` : "next event";
}

async function moveClock(body, label) {
  moving = true; renderClock();
  const status = $("#clock-status");
  status.className = "status"; status.textContent = `moving ${label}…`;
  try {
    const answer = await api("POST", "/api/clock", body);
    status.textContent = `moved ${label}` + (body.next ? ` (+${duration(answer.seconds)})` : "");
    for (const n of answer.notes || []) notice(n);
  } catch (err) {
    status.className = "status bad"; status.textContent = err.message;
  } finally {
    moving = false;
    try { state.health = (await api("GET", "/api/services")).health; renderServices(); } catch (e) { /* the stream says */ }
    renderClock();
  }
}

// --- faults -----------------------------------------------------------------------------------
function paramsText(action) {
  const p = action.params || {};
  return Object.entries(p).map(([k, v]) => `${k}=${v}`).join(" ");
}
function matchText(match) {
  if (!match) return "*";
  const parts = [match.method, match.path, match.operation && `op=${match.operation}`,
    ...Object.entries(match.selectors || {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean);
  return parts.join(" ") || "*";
}
function scopeText(rule) {
  const parts = [];
  if (rule.times != null) parts.push(`${rule.remaining}/${rule.times} left`);
  if (rule.probability != null) parts.push(`p=${rule.probability}`);
  if (rule.window) parts.push(`${shortTime(rule.window.from)}..${rule.window.until ? day(rule.window.until).slice(5) + " " + shortTime(rule.window.until) : ""}`);
  return parts.join(", ") || "always";
}

function renderRules() {
  const box = $("#faults");
  box.replaceChildren();
  for (const name of Object.keys(state.services)) {
    const got = state.rules[name];
    if (!got || got.absent) continue;
    const head = h("div", { class: "fault-service" }, name);
    if (got.error) { box.append(head, h("div", { class: "state-bad" }, got.error)); continue; }
    if (!got.rules.length) continue;
    const table = h("table", { class: "rules", "data-service": name });
    for (const rule of got.rules) {
      table.append(h("tr", { "data-rule": rule.id },
        h("td", { class: "mono rule-id" }, rule.id),
        h("td", {},
          h("div", {}, `${rule.action.type} ${paramsText(rule.action)}`.trim()),
          h("div", { class: "rule-scope" }, h("span", { class: "mono" }, matchText(rule.match)),
            ` · ${scopeText(rule)} · ${rule.hits} hit${rule.hits === 1 ? "" : "s"}`)),
        h("td", { class: "rule-remove" }, h("button", { class: "remove", type: "button", title: `remove ${rule.id}`,
          onclick: () => removeRule(name, rule.id) }, "remove"))));
    }
    box.append(head, table);
  }
  if (!box.children.length) box.append(h("p", { class: "help" }, "No fault rule in force."));
}

async function removeRule(service, id) {
  try { await api("DELETE", `/api/faults/${encodeURIComponent(service)}/${encodeURIComponent(id)}`); }
  catch (err) { notice(`${service}: ${err.message}`); }
}

function faultServices() {
  return Object.keys(state.services).filter((n) => !(state.absent[n] || []).includes("faults") && !(state.rules[n] || {}).absent);
}
function renderFaultServices() {
  const select = $("#fault-service");
  const names = faultServices();
  const current = select.value;
  if ([...select.options].map((o) => o.value).join() === names.join()) return;
  select.replaceChildren(...names.map((n) => h("option", { value: n }, n)));
  if (names.includes(current)) select.value = current;
  else if (names.includes("iot")) select.value = "iot";
  renderActions();
}
function renderActions() {
  const select = $("#fault-action");
  const actions = state.actions[$("#fault-service").value] || [];
  const current = select.value;
  select.replaceChildren(...actions.map((a) => h("option", { value: a.name, title: a.description }, `${a.name} (${a.kind})`)));
  if (actions.some((a) => a.name === current)) select.value = current;
  renderParams();
}
function schemaType(spec) {
  if (spec.enum) return "enum";
  if (spec.type) return spec.type;
  const some = (spec.anyOf || []).find((x) => x.type && x.type !== "null");
  return some ? some.type : "string";
}
function renderParams() {
  const box = $("#fault-params");
  const action = (state.actions[$("#fault-service").value] || []).find((a) => a.name === $("#fault-action").value);
  $("#fault-action-help").textContent = action ? action.description : "";
  const props = (action && action.params && action.params.properties) || {};
  const required = (action && action.params && action.params.required) || [];
  const fields = Object.entries(props).map(([key, spec]) => {
    const type = schemaType(spec);
    const label = `${key}${required.includes(key) ? " *" : ""}`;
    let input;
    if (type === "enum") {
      input = h("select", { name: `param.${key}`, "data-type": "string" },
        required.includes(key) ? null : h("option", { value: "" }, "(default)"),
        spec.enum.map((v) => h("option", { value: v, selected: v === spec.default }, v)));
    } else if (type === "boolean") {
      input = h("input", { type: "checkbox", name: `param.${key}`, "data-type": "boolean", checked: spec.default === true });
    } else {
      const numeric = type === "number" || type === "integer";
      input = h("input", { name: `param.${key}`, "data-type": type, type: numeric ? "number" : "text",
        step: type === "integer" ? "1" : "any", required: required.includes(key),
        placeholder: spec.default !== undefined && spec.default !== null ? `default ${spec.default}` : "" });
    }
    return h("label", { title: spec.description || "" }, label, input);
  });
  box.replaceChildren(h("legend", {}, "params"), fields.length ? h("div", { class: "grid" }, fields) : h("span", { class: "help" }, "none"));
}

function ruleFromForm(form) {
  const data = new FormData(form);
  const get = (k) => String(data.get(k) || "").trim();
  const rule = { action: { type: get("action") } };
  const params = {};
  for (const input of form.querySelectorAll("[name^='param.']")) {
    const key = input.name.slice(6), type = input.dataset.type;
    if (type === "boolean") { params[key] = input.checked; continue; }
    const raw = input.value.trim();
    if (raw === "") continue;
    params[key] = type === "number" || type === "integer" ? Number(raw) : raw;
  }
  if (Object.keys(params).length) rule.action.params = params;
  const match = {};
  for (const k of ["method", "path", "operation"]) if (get(k)) match[k] = get(k);
  if (get("selectors")) {
    match.selectors = {};
    for (const part of get("selectors").split(",")) {
      const [k, ...v] = part.split("=");
      if (k.trim() && v.length) match.selectors[k.trim()] = v.join("=").trim();
    }
  }
  if (Object.keys(match).length) rule.match = match;
  if (get("times")) rule.times = Number(get("times"));
  if (get("probability")) rule.probability = Number(get("probability"));
  if (get("from") || get("until")) {
    rule.window = {};
    if (get("from")) rule.window.from = get("from");
    if (get("until")) rule.window.until = get("until");
  }
  if (get("id")) rule.id = get("id");
  if (get("description")) rule.description = get("description");
  return rule;
}

async function addRule(ev) {
  ev.preventDefault();
  const form = ev.target, service = $("#fault-service").value, out = $("#fault-result");
  out.className = "status"; out.textContent = "adding…";
  try {
    const answer = await api("POST", `/api/faults/${encodeURIComponent(service)}`, ruleFromForm(form));
    out.textContent = `added ${answer.rule.id} to ${service}`;
  } catch (err) {
    out.className = "status bad"; out.textContent = err.message;
  }
}

async function loadFaults() {
  const listed = await api("GET", "/api/faults");
  for (const [name, got] of Object.entries(listed)) {
    if (got.actions) state.actions[name] = got.actions;
    state.rules[name] = got.actions ? { rules: got.rules } : got;
  }
  renderRules(); renderFaultServices(); renderActions();
}

// --- the sequence diagram ---------------------------------------------------------------------
const ACTORS = ["client", "scenario", "dashboard"];
function related(entries, needle) {
  needle = needle.trim().toLowerCase();
  if (!needle) return entries;
  const named = (e) => Object.values(e.entities || {}).some((v) => String(v).toLowerCase().includes(needle));
  // The entries naming it, and those of the same requests (their correlation id): a webhook
  // about a payment belongs to the purchase that caused it.
  const ids = new Set(entries.filter(named).map((e) => e.correlationId).filter(Boolean));
  return entries.filter((e) => named(e) || (e.correlationId && ids.has(e.correlationId)));
}

function lanesOf(rows) {
  const used = new Set(["core"]);
  for (const e of rows) { used.add(e.draw.from); used.add(e.draw.to); }
  const order = [...ACTORS, "core", ...Object.keys(state.services).filter((n) => n !== "core")];
  const lanes = order.filter((n) => used.has(n));
  for (const n of used) if (!lanes.includes(n)) lanes.push(n);
  return lanes;
}

function fit(text, px) {
  const max = Math.max(4, Math.floor(px / 6.1));
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

function drawDiagram(container, rows, { onSelect } = {}) {
  if (!rows.length) {
    container.replaceChildren(h("div", { class: "empty" }, "No journal entry yet: call the core or a simulator, or move the clock."));
    return;
  }
  const lanes = lanesOf(rows);
  const gutter = 96, rowH = 24, headH = 30;
  const laneW = Math.max(120, Math.floor((container.clientWidth - gutter - 12) / lanes.length));
  const width = gutter + laneW * lanes.length;
  const height = headH + rows.length * rowH + 10;
  const x = (lane) => gutter + laneW * lanes.indexOf(lane) + laneW / 2;
  const ah = `${container.id}-ah`;  // marker ids of this diagram's own (another may be hidden)
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "sequence diagram" },
    s("defs", {},
      ["call", "webhook", "fault", "error"].map((k) => s("marker", { id: `${ah}-${k}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
        s("path", { d: "M0,0 L10,5 L0,10 z", fill: { call: "#2b5fab", webhook: "#7a3fa8", fault: "#c62828", error: "#d9730d" }[k] })))));
  for (const lane of lanes) {
    svg.append(s("line", { class: "lifeline", x1: x(lane), x2: x(lane), y1: headH, y2: height }));
    svg.append(s("g", { class: "lane-head", "data-lane": lane },
      s("rect", { x: x(lane) - laneW / 2 + 6, y: 3, width: laneW - 12, height: 22, rx: 4 }),
      s("text", { x: x(lane), y: 18 }, fit(lane, laneW - 16))));
  }
  let lastDay = null, lastTime = null;
  rows.forEach((e, i) => {
    const y = headH + i * rowH + rowH / 2 + 2;
    const d = e.draw;
    const mark = d.mark ? ` mark-${d.mark}` : "";
    const g = s("g", { class: `row ${d.style}${mark}${state.selected === e.id ? " selected" : ""}`, "data-id": e.id,
      "data-service": e.service, "data-kind": e.kind });
    g.append(s("rect", { class: "hit", x: 0, y: y - rowH / 2 - 1, width, height: rowH }));
    const today = day(e.vt), time = shortTime(e.vt);
    if (today !== lastDay) { g.append(s("text", { class: "time day", x: 4, y: y + 4 }, today.slice(5) + " " + time)); }
    else if (time !== lastTime) { g.append(s("text", { class: "time", x: 4, y: y + 4 }, time)); }
    lastDay = today; lastTime = time;
    if (d.from === d.to) {
      const w = Math.min(Math.max(60, d.label.length * 6.2 + 12), laneW * 1.8);
      g.append(s("rect", { class: "box", x: x(d.from) - w / 2, y: y - 9, width: w, height: 17, rx: 3 }));
      g.append(s("text", { class: "label", x: x(d.from), y: y + 4 }, fit(d.label, w - 8)));
    } else {
      const x1 = x(d.from), x2 = x(d.to);
      const kind = d.mark === "fault" || d.mark === "violation" ? "fault" : d.mark === "error" ? "error" : d.style;
      g.append(s("line", { x1, x2: x2 + (x2 > x1 ? -2 : 2), y1: y + 5, y2: y + 5, "marker-end": `url(#${ah}-${kind})` }));
      g.append(s("text", { class: "label", x: (x1 + x2) / 2, y: y + 1 }, fit(d.label, Math.abs(x2 - x1) - 6)));
    }
    g.append(s("title", {}, `${e.vt}  ${e.service} #${e.seq}  ${d.label}`));
    g.addEventListener("click", () => onSelect && onSelect(e));
    svg.append(g);
  });
  const atBottom = container.scrollTop + container.clientHeight >= container.scrollHeight - 30;
  container.replaceChildren(svg);
  if (atBottom) container.scrollTop = container.scrollHeight;
}

function showEntry(e) {
  state.selected = e.id;
  const box = $("#entry-detail");
  const { draw, _key, ...raw } = e;
  box.replaceChildren(
    h("div", {}, Object.entries(e.entities || {}).map(([k, v]) => k === "vin"
      ? h("a", { class: "chip", href: `#/vehicle/${encodeURIComponent(v)}` }, `${k} ${v}`)
      : h("a", { class: "chip", href: "#/", onclick: (ev) => { ev.preventDefault(); setFilter(v); } }, `${k} ${v}`))),
    JSON.stringify(raw, null, 2));
  box.hidden = false;
  scheduleDiagram();
}
function setFilter(value) { $("#filter").value = value; scheduleDiagram(); }

let diagramPending = false;
function scheduleDiagram() {
  if (diagramPending) return;
  diagramPending = true;
  requestAnimationFrame(() => { diagramPending = false; renderDiagram(); });
}
function renderDiagram() {
  if ($("#world-view").hidden) return;
  const shown = related(state.entries, $("#filter").value);
  const max = Number($("#rows-max").value);
  const rows = shown.slice(-max);
  $("#journal-count").textContent = `${rows.length} of ${shown.length}` + ($("#filter").value.trim() ? " matching" : "");
  drawDiagram($("#diagram"), rows, { onSelect: showEntry });
}

// --- the vehicle page -------------------------------------------------------------------------
let vehicleTimer = null;
function scheduleVehicle() {
  if (vehicleTimer) return;
  vehicleTimer = setTimeout(() => { vehicleTimer = null; loadVehicle(); }, 700);
}
async function loadVehicle() {
  const vin = state.vin;
  if (!vin) return;
  const box = $("#vehicle-status");
  let data;
  try { data = await api("GET", `/api/vehicles/${encodeURIComponent(vin)}`); }
  catch (err) { box.replaceChildren(h("p", { class: "state-bad" }, err.message)); return; }
  if (vin !== state.vin) return;
  if (!data.vehicle) {
    const p = data.problem || {};
    box.replaceChildren(h("p", { class: "state-bad" }, `${data.status} ${p.title || ""}${p.detail ? ": " + p.detail : ""}`));
  } else {
    const v = data.vehicle, diag = v.diagnostics || {};
    const active = new Set((v.activeServices || []).filter((a) => a.status === "ACTIVE").flatMap((a) => a.featureFlags || []));
    box.replaceChildren(
      h("dl", { class: "kv" },
        h("dt", {}, "connectivity"), h("dd", { id: "vehicle-connectivity" }, v.connectivity),
        h("dt", {}, "last seen"), h("dd", { class: "mono" }, v.lastSeen || "-"),
        h("dt", {}, "model"), h("dd", {}, v.model || "-"),
        h("dt", {}, "firmware"), h("dd", {}, diag.firmwareVersion || "-"),
        h("dt", {}, "signal"), h("dd", {}, diag.networkSignalStrength != null ? `${diag.networkSignalStrength}%` : "-"),
        h("dt", {}, "error codes"), h("dd", {}, (diag.errorCodes || []).join(", ") || "none"),
        h("dt", {}, "features"), h("dd", {}, (diag.installedFeatures || []).map((f) => h("span", { class: `chip${active.has(f) ? " on" : ""}` }, f)))),
      h("table", { id: "active-services" },
        h("thead", {}, h("tr", {}, ["service", "status", "since", "duration", "expires"].map((t) => h("th", {}, t)))),
        h("tbody", {}, (v.activeServices || []).map((a) => h("tr", {},
          h("td", {}, a.serviceId), h("td", {}, a.status), h("td", { class: "mono" }, a.activationDate || "-"),
          h("td", {}, a.durationType || "-"), h("td", { class: "mono" }, a.expiryDate || "-"))))));
  }
  $("#ota-requests tbody").replaceChildren(...(data.requests.length ? data.requests.map((r) => h("tr", { "data-request": r.requestId },
    h("td", { class: "mono" }, r.requestId), h("td", {}, r.serviceId || "-"), h("td", {}, r.kind || "-"),
    h("td", { class: "mono" }, r.queued || "-"), h("td", {}, r.state || "-"),
    h("td", {}, r.webhooks.map((w) => `${w.outcome || w.status}${w.attempt > 1 ? ` (attempt ${w.attempt})` : ""}`).join(", ") || "-"),
    h("td", { class: "state-bad" }, r.faults.join(", ")))) : [h("tr", {}, h("td", { colspan: 7, class: "help" }, "No OTA request for this vehicle in the IoT journal."))]));
  drawDiagram($("#vehicle-diagram"), data.entries);
}

// --- routing ----------------------------------------------------------------------------------
function route() {
  const m = location.hash.match(/^#\/vehicle\/(.+)$/);
  const vehicle = Boolean(m);
  $("#world-view").hidden = vehicle;
  $("#vehicle-view").hidden = !vehicle;
  if (vehicle) {
    state.vin = decodeURIComponent(m[1]).trim().toUpperCase();
    $("#vehicle-vin").textContent = state.vin;
    $("#vehicle-journal").href = "#/";
    $("#vehicle-journal").onclick = () => { setTimeout(() => setFilter(state.vin), 0); };
    $("#vehicle-status").replaceChildren(h("p", { class: "help" }, "…"));
    loadVehicle();
  } else {
    state.vin = null;
    scheduleDiagram();
  }
}

// --- start ------------------------------------------------------------------------------------
function start() {
  for (const b of document.querySelectorAll("[data-advance]")) {
    b.addEventListener("click", () => moveClock({ advance: b.dataset.advance }, `+${b.dataset.advance}`));
  }
  $("#next-due").addEventListener("click", () => moveClock({ next: true }, "to the next event"));
  $("#fault-service").addEventListener("change", renderActions);
  $("#fault-action").addEventListener("change", renderParams);
  $("#fault-form").addEventListener("submit", addRule);
  $("#filter").addEventListener("input", scheduleDiagram);
  $("#rows-max").addEventListener("change", scheduleDiagram);
  $("#vehicle-refresh").addEventListener("click", loadVehicle);
  $("#vin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const vin = $("#vin-input").value.trim();
    if (vin) location.hash = `#/vehicle/${encodeURIComponent(vin.toUpperCase())}`;
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("resize", scheduleDiagram);
  api("GET", "/api/info").then((info) => {
    $("#report-link").hidden = !info.report;
    if (!info.iot) $("#vin-form").hidden = true;
  }).catch(() => {});
  loadFaults().catch((err) => notice(`fault rules: ${err.message}`));
  connect();
  route();
  renderClock();
}
start();
