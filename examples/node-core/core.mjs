// A small CaaS core in Node.js (no dependencies: node's http and crypto only), speaking a
// slice of contracts/core.yaml to the simulators of `caas-sim up --core-url`:
//
//   POST /customers/{customerId}/vehicles/{vin}/purchases   buy a service (API key, Idempotency-Key)
//   GET  /purchases/{purchaseId}, /customers/{customerId}/purchases, /customers/{customerId}/notifications,
//        /support/tickets, /catalogue/services
//   POST /caas/webhooks/ota-status, /caas/webhooks/payments   signed callbacks (Standard Webhooks)
//
// A purchase checks the vehicle (IoT), charges through the payment gateway, answers 201 and
// activates over the air with the specification's retry policy (4 attempts, waits of 1, 5 and
// 15 minutes, 60 s per attempt); when every attempt fails it queries the vehicle, opens a
// support ticket with its diagnostics, refunds in full and tells the customer by email and push.
// It keeps everything in memory and implements none of the admin protocol (/__admin/*):
// it runs on its own clock, real or scaled. See README.md.

import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import http from "node:http";

const env = process.env;
const PORT = Number(env.PORT || 9000);
const IOT = (env.CAAS_UPSTREAMS__IOT || "http://127.0.0.1:8103").replace(/\/$/, "");
const PAYMENTS = (env.CAAS_UPSTREAMS__PAYMENTS || "http://127.0.0.1:8104").replace(/\/$/, "");
const DEV_SECRET = "whsec_Y2Fhcy1zaW0tZGV2ZWxvcG1lbnQtc2VjcmV0LTAwMDA=";
const SECRETS = { iot: env.CAAS_SIM_IOT_WEBHOOK_SECRET || DEV_SECRET,
                  payments: env.CAAS_SIM_PAYMENTS_WEBHOOK_SECRET || DEV_SECRET };
const KEYS = JSON.parse(env.CAAS_API_KEYS || '{"dev-customer": {"role": "customer", "subject": "c-1"}, ' +
                                            '"dev-operator": {"role": "operator"}}');

// --- the clock: real, or scaled (CAAS_CLOCK=scaled:N, N seconds a real second, as `up --clock`)
const [MODE, FACTOR] = (env.CAAS_CLOCK || "real").split(":");
const SCALE = MODE === "scaled" ? Number(FACTOR) : 1;
if (!(SCALE > 0) || !["real", "scaled"].includes(MODE)) {
  throw new Error(`CAAS_CLOCK: real or scaled:N, not ${env.CAAS_CLOCK}`);
}
const START = env.CAAS_CLOCK_START ? Date.parse(env.CAAS_CLOCK_START) : Date.now();
const T0 = performance.now();
const now = () => START + (performance.now() - T0) * SCALE;
const iso = (ms = now()) => new Date(ms).toISOString();
const later = (seconds, fn) => setTimeout(fn, (seconds * 1000) / SCALE);

// --- the retry policy of the specification (caas_core/domain/ota_policy.py)
const ATTEMPTS = 4, BACKOFF = [60, 300, 900, 1800], ATTEMPT_TIMEOUT = 60, API_DEADLINE = 24 * 3600;
const TERMINAL = new Set(["FEATURE_NOT_INSTALLED", "CONFIG_REJECTED"]);
const CHANNELS = { SERVICE_ACTIVATED: ["email", "push", "in_vehicle"], ACTIVATION_DELAYED: ["email", "push"],
                   ACTIVATION_FAILED_REFUNDED: ["email", "push"] };
const CATALOGUE = [
  { serviceId: "heated-seats", name: "Heated Seats", description: "Front seat heating, three levels.",
    featureFlags: ["heated_seats"], parameters: { level: "high", maxTempC: 30, autoStart: true },
    prices: { TEMPORARY: { value: 999, currency: "EUR" }, PERMANENT: { value: 29900, currency: "EUR" } },
    temporaryDays: 30, maintenanceRequirements: [] },
  { serviceId: "premium-audio", name: "Premium Audio", description: "The full premium sound system.",
    featureFlags: ["premium_audio"], parameters: {},
    prices: { PERMANENT: { value: 24900, currency: "EUR" } }, temporaryDays: null, maintenanceRequirements: [] },
];

// --- state, in memory
const purchases = new Map(), byRequest = new Map(), byPayment = new Map(), owners = new Map();
const notifications = new Map(), tickets = [], idempotency = new Map(), seenWebhooks = new Set();
const early = new Map(); // callbacks that overtook the 202 of their activation
const id = (prefix) => `${prefix}_${randomBytes(10).toString("hex")}`;

class Problem extends Error {
  constructor(status, kind, title, detail, extra = {}) {
    super(detail);
    Object.assign(this, { status, kind, title, extra });
  }
}

// --- upstream calls (JSON over http, 10 s of real time at most)
const agent = new http.Agent({ keepAlive: true });
function call(method, url, body, headers = {}) {
  return new Promise((resolve) => {
    const data = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const req = http.request(url, { method, agent, timeout: 10_000, headers: { Accept: "application/json", ...headers,
      ...(data ? { "Content-Type": "application/json", "Content-Length": data.length } : {}) } }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => {
        let json = null;
        try { json = JSON.parse(Buffer.concat(chunks).toString() || "null"); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, body: json, headers: res.headers });
      });
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", (err) => resolve({ status: 0, body: null, error: err.message }));
    if (data) req.write(data);
    req.end();
  });
}
const unavailable = (s) => s === 0 || s >= 500 || [408, 409, 425, 429].includes(s) || s < 200;

function notify(p, template, extra = {}) {
  const list = notifications.get(p.customerId) || notifications.set(p.customerId, []).get(p.customerId);
  for (const channel of CHANNELS[template]) {
    list.push({ notificationId: id("ntf"), channel, template, createdAt: iso(),
                payload: { purchaseId: p.purchaseId, serviceId: p.serviceId, vin: p.vin, ...extra } });
  }
}

// --- buying a service
async function purchase(customerId, vin, body, correlation) {
  const offer = CATALOGUE.find((s) => s.serviceId === body.serviceId);
  if (!offer) throw new Problem(404, "unknown-service", "Unknown service", `no service ${body.serviceId} in the catalogue`);
  const price = offer.prices[body.durationType];
  if (!price) throw new Problem(422, "duration-not-offered", "Duration not offered",
                                `${body.serviceId} is not sold as ${body.durationType}`);
  const vehicle = await call("GET", `${IOT}/vehicles/${vin}/status`, undefined, correlation);
  if (vehicle.status === 404 || (owners.has(vin) && owners.get(vin) !== customerId)) {
    throw new Problem(404, "unknown-vehicle", "Unknown vehicle", `no vehicle ${vin} of customer ${customerId}`);
  }
  owners.set(vin, customerId);
  const expiresAt = body.durationType === "TEMPORARY" ? iso(now() + offer.temporaryDays * 86400_000) : null;
  const p = { purchaseId: id("pur"), customerId, vin, serviceId: offer.serviceId, durationType: body.durationType,
              expiresAt, price, status: "REQUESTED", attempts: 0, paymentId: null,
              riskDecision: vehicle.status === 200 ? null : "IOT_UNAVAILABLE_ALLOWED", warnings: [],
              refunded: { value: 0, currency: price.currency }, refundPending: { value: 0, currency: price.currency },
              createdAt: iso(), deliveredAt: null };
  const paid = await call("POST", `${PAYMENTS}/payments/initiate`, {
    paymentType: "SERVICE", amount: price, paymentMethod: body.paymentMethod,
    metadata: { customerId, orderId: p.purchaseId, vin, serviceId: p.serviceId, description: offer.name },
  }, { "Idempotency-Key": `${p.purchaseId}:pay`, ...correlation });
  if (unavailable(paid.status)) {
    throw new Problem(503, "payments-unavailable", "Payment gateway unavailable", "nothing was charged; try again later",
                      { retryAfter: 60 });
  }
  purchases.set(p.purchaseId, p);
  if (paid.status !== 201 || paid.body.status === "DECLINED") {
    p.status = "REFUSED";
    const why = paid.status === 201 ? paid.body.declineReason : paid.body?.detail;
    throw new Problem(422, "payment-declined", "Payment declined", `the payment was declined (${why})`);
  }
  Object.assign(p, { paymentId: paid.body.paymentId, status: "ACTIVATION_QUEUED" });
  byPayment.set(p.paymentId, p);
  Object.assign(p, { queuedAt: now(), correlation, unavailableRetries: 0 });
  setImmediate(() => attempt(p));
  return view(p);
}

// what contracts/core.yaml's Purchase holds (the rest of the object is this core's bookkeeping)
const FIELDS = ["purchaseId", "customerId", "vin", "serviceId", "durationType", "expiresAt", "price", "status", "attempts",
                "paymentId", "riskDecision", "warnings", "refunded", "refundPending", "createdAt", "deliveredAt"];
const view = (p) => Object.fromEntries(FIELDS.map((k) => [k, p[k]]));

// --- OTA activation, with retries
async function attempt(p) {
  if (p.status !== "ACTIVATION_QUEUED") return;
  const offer = CATALOGUE.find((s) => s.serviceId === p.serviceId);
  p.attempts += 1;
  p.status = "ACTIVATING";
  const answer = await call("POST", `${IOT}/ota/activate`, {
    vin: p.vin, serviceId: p.serviceId,
    duration: { type: p.durationType, ...(p.expiresAt ? { expiryDate: p.expiresAt } : {}) },
    configuration: { featureFlags: offer.featureFlags, parameters: offer.parameters },
  }, { "Idempotency-Key": `${p.purchaseId}:${p.attempts}`, ...p.correlation });
  if (answer.status === 202) {
    p.requestId = answer.body.requestId;
    p.inFlight = true;
    byRequest.set(p.requestId, p);
    p.timer = later(ATTEMPT_TIMEOUT, () => p.inFlight && p.requestId === answer.body.requestId && failed(p, "TIMEOUT"));
    if (early.has(p.requestId)) { otaStatus(early.get(p.requestId)); early.delete(p.requestId); }
  } else if (unavailable(answer.status)) { // the vehicle was not reached: no attempt used, the activation stays queued
    p.attempts -= 1;
    p.status = "ACTIVATION_QUEUED";
    if (now() - p.queuedAt >= API_DEADLINE * 1000) return giveUp(p, `IOT_HTTP_${answer.status}`);
    if (!p.delayNotified) { p.delayNotified = true; notify(p, "ACTIVATION_DELAYED"); }
    const wait = BACKOFF[Math.min(p.unavailableRetries++, BACKOFF.length - 1)];
    p.timer = later(Math.max(wait, Number(answer.headers?.["retry-after"]) || 0), () => attempt(p));
  } else { // 4xx: refused, retrying cannot help (and the vehicle was not reached)
    p.attempts -= 1;
    await giveUp(p, `IOT_HTTP_${answer.status}`);
  }
}

function activated(p) {
  clearTimeout(p.timer);
  Object.assign(p, { status: "ACTIVE", inFlight: false, deliveredAt: iso() });
  notify(p, "SERVICE_ACTIVATED");
}

function failed(p, errorCode) {
  clearTimeout(p.timer);
  Object.assign(p, { inFlight: false, lastError: errorCode, unavailableRetries: 0 });
  if (TERMINAL.has(errorCode) || p.attempts >= ATTEMPTS) return giveUp(p, errorCode);
  p.status = "ACTIVATION_QUEUED";
  p.timer = later(BACKOFF[Math.min(p.attempts, BACKOFF.length) - 1], () => attempt(p));
}

async function giveUp(p, lastError) {
  p.givingUp = true; // callbacks from now on are not acted on: the vehicle's status decides
  const vehicle = await call("GET", `${IOT}/vehicles/${p.vin}/status`, undefined, p.correlation);
  const v = vehicle.status === 200 ? vehicle.body : null;
  const onVehicle = v?.activeServices.find((s) => s.serviceId === p.serviceId)?.status ?? null;
  if (onVehicle === "ACTIVE") { p.givingUp = false; return activated(p); } // e.g. a lost callback: delivered after all
  const offer = CATALOGUE.find((s) => s.serviceId === p.serviceId);
  const missing = v ? offer.featureFlags.filter((f) => !v.diagnostics.installedFeatures.includes(f)) : [];
  openTicket(p, `OTA activation of ${p.serviceId} failed on ${p.vin} after ${p.attempts} attempt(s): ${lastError}`, {
    connectivity: v?.connectivity ?? null, lastSeen: v?.lastSeen ?? null,
    firmwareVersion: v?.diagnostics.firmwareVersion ?? null,
    networkSignalStrength: v?.diagnostics.networkSignalStrength ?? null, errorCodes: v?.diagnostics.errorCodes ?? [],
    serviceStatusOnVehicle: onVehicle, missingFeatures: missing,
    vehicleStatusError: v ? null : `GET /vehicles/${p.vin}/status answered ${vehicle.status || vehicle.error}`,
    attempts: p.attempts, lastError, priority: v?.connectivity === "ONLINE" || missing.length ? "HIGH" : "NORMAL",
  });
  const refund = await call("POST", `${PAYMENTS}/payments/${p.paymentId}/refund`,
                            { reason: "OTA_ACTIVATION_FAILURE", description: `${p.serviceId} could not be activated` },
                            { "Idempotency-Key": `${p.purchaseId}:refund`, ...p.correlation });
  p.status = "ACTIVATION_FAILED";
  if (refund.status === 202) p.refundPending = { ...p.price };
  else openTicket(p, `Refund ${p.price.value} ${p.price.currency} by hand (OTA_ACTIVATION_FAILURE)`,
                  { error: `payment gateway answered ${refund.status || refund.error}`, paymentId: p.paymentId });
  notify(p, "ACTIVATION_FAILED_REFUNDED", { amount: p.price });
}

function openTicket(p, subject, diagnostics) {
  tickets.push({ ticketId: id("tkt"), customerId: p.customerId, vin: p.vin, purchaseId: p.purchaseId, subject,
                 diagnostics, status: "open", createdAt: iso() });
}

// --- webhooks: Standard Webhooks signature, deduplicated on webhook-id
function verify(secret, headers, raw) {
  const [msgId, ts, sigs] = ["webhook-id", "webhook-timestamp", "webhook-signature"].map((h) => headers[h]);
  if (!msgId || !/^\d+$/.test(ts || "") || !sigs) {
    throw new Problem(401, "webhook-signature", "Invalid webhook signature", "signature headers missing");
  }
  if (Math.abs(Date.now() / 1000 - Number(ts)) > 300) {
    throw new Problem(401, "webhook-timestamp", "Stale webhook", `signed at ${ts}, more than 5 minutes away`);
  }
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const expected = createHmac("sha256", key).update(`${msgId}.${ts}.`).update(raw).digest();
  const ok = sigs.split(" ").some((s) => {
    const [version, value] = s.split(",");
    const given = Buffer.from(value || "", "base64");
    return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected);
  });
  if (!ok) throw new Problem(401, "webhook-signature", "Invalid webhook signature", "no v1 signature matches the body");
  return msgId;
}

function otaStatus(event) {
  const p = byRequest.get(event.requestId);
  if (!p) { // its 202 is still on the way (or it is not ours: kept a while all the same)
    if (early.size >= 1000) early.delete(early.keys().next().value);
    return void early.set(event.requestId, event);
  }
  if (p.givingUp) return;
  const delivering = p.status === "ACTIVATION_QUEUED" || p.status === "ACTIVATING";
  if (event.status === "ACTIVATED" && delivering) activated(p); // even after our timeout
  else if (event.status === "EXPIRED" && p.status === "ACTIVE") p.status = "EXPIRED";
  else if (event.status === "FAILED" && p.inFlight && p.requestId === event.requestId) failed(p, event.errorCode);
}

function paymentEvent(event) {
  const p = byPayment.get(event.paymentId);
  if (!p || event.event !== "refundStatus") return; // settlements and chargebacks: acknowledged only
  p.refundPending = { ...p.refundPending, value: Math.max(0, p.refundPending.value - event.amount.value) };
  if (event.status === "SUCCEEDED") {
    p.refunded = { ...p.refunded, value: p.refunded.value + event.amount.value };
    if (p.refunded.value >= p.price.value) p.status = "REFUNDED";
  } else {
    openTicket(p, `Refund ${event.amount.value} ${event.amount.currency} by hand (${event.failureReason})`,
               { error: `refund ${event.refundId} failed: ${event.failureReason}`, paymentId: p.paymentId });
  }
}

// --- HTTP: routing, API keys, idempotency
function authenticate(req, roles) { // 401, then (unless roles is null) 403
  const m = /^Bearer (.+)$/.exec(req.headers.authorization || "");
  const who = m && KEYS[m[1]];
  if (!who) throw new Problem(401, "unauthenticated", "Authentication required", "send `Authorization: Bearer <api key>`");
  return roles ? allow({ key: m[1], ...who }, roles) : { key: m[1], ...who };
}
function allow(who, roles) {
  if (!roles.includes(who.role)) {
    throw new Problem(403, "forbidden", "Forbidden", `this operation is not for the role ${who.role}`);
  }
  return who;
}
function owns(who, customerId) {
  if (who.role === "customer" && who.subject !== customerId) {
    throw new Problem(403, "forbidden", "Forbidden", "this resource belongs to another customer");
  }
}
function purchaseOf(who, purchaseId) {
  const p = purchases.get(purchaseId);
  if (!p) throw new Problem(404, "unknown-purchase", "Unknown purchase", `no purchase ${purchaseId}`);
  owns(who, p.customerId);
  return p;
}

async function route(req, raw) {
  const path = new URL(req.url, "http://core").pathname;
  const correlation = req.headers["x-correlation-id"] ? { "X-Correlation-Id": req.headers["x-correlation-id"] } : {};
  const [, a, b, c, d, e] = path.split("/");
  const is = (method, shape) => req.method === method && shape;
  if (a === "caas" && b === "webhooks" && (c === "ota-status" || c === "payments") && !d) {
    if (req.method !== "POST") throw new Problem(405, "method-not-allowed", "Method not allowed", "POST only");
    const msgId = verify(SECRETS[c === "ota-status" ? "iot" : "payments"], req.headers, raw);
    let event;
    try { event = JSON.parse(raw.toString()); } catch { event = null; }
    if (!event || typeof event !== "object" || Array.isArray(event)) {
      throw new Problem(400, "webhook-body", "Invalid webhook body", "not a JSON object");
    }
    if (!seenWebhooks.has(msgId)) { seenWebhooks.add(msgId); (c === "ota-status" ? otaStatus : paymentEvent)(event); }
    return [204];
  }
  if (is("GET", a === "catalogue" && b === "services" && !c)) {
    authenticate(req, ["customer", "dealership", "operator"]);
    return [200, { services: CATALOGUE.map(({ parameters, ...offer }) => offer) }];
  }
  if (is("POST", a === "customers" && c === "vehicles" && e === "purchases" && path.split("/").length === 6)) {
    const who = authenticate(req, null);
    let body;
    try { body = JSON.parse(raw.toString()); } catch { body = null; }
    if (!body || typeof body.serviceId !== "string" ||
        !["TEMPORARY", "PERMANENT", "SUBSCRIPTION"].includes(body.durationType) ||
        !["CARD", "BANK_TRANSFER"].includes(body.paymentMethod?.type) ||
        !/^pm_[A-Za-z0-9_]{1,61}$/.test(body.paymentMethod?.token)) {
      throw new Problem(400, "contract-violation", "Request does not conform to the contract",
                        "expected {serviceId, durationType, paymentMethod: {type, token}}");
    }
    owns(allow(who, ["customer", "operator"]), b);
    return idempotent(who, req.headers["idempotency-key"], raw, () => purchase(b, d, body, correlation));
  }
  if (is("GET", a === "purchases" && b && !c)) {
    return [200, view(purchaseOf(authenticate(req, ["customer", "operator"]), b))];
  }
  if (is("GET", a === "customers" && b && ["purchases", "notifications"].includes(c) && !d)) {
    owns(authenticate(req, ["customer", "operator"]), b);
    if (c === "notifications") return [200, { notifications: notifications.get(b) || [] }];
    return [200, { purchases: [...purchases.values()].filter((p) => p.customerId === b).map(view) }];
  }
  if (is("GET", a === "support" && b === "tickets" && !c)) {
    authenticate(req, ["operator"]);
    return [200, { tickets }];
  }
  throw new Problem(404, "not-found", "Not found", `no route ${req.method} ${path}`);
}

async function idempotent(who, key, raw, run) {
  if (!key) return [201, await run()];
  const slot = `${who.key} ${key}`, seen = idempotency.get(slot);
  if (seen?.body && !seen.body.equals(raw)) {
    throw new Problem(422, "idempotency-mismatch", "Idempotency-Key reused with another request",
                      `Idempotency-Key '${key}' was first used with another request`);
  }
  if (seen?.inFlight) throw new Problem(409, "idempotency-in-flight", "A request with this Idempotency-Key is in progress");
  if (seen?.purchaseId) return [201, view(purchases.get(seen.purchaseId)), { "Idempotent-Replayed": "true" }];
  if (seen?.problem) throw seen.problem;
  idempotency.set(slot, { body: raw, inFlight: true });
  try {
    const p = await run();
    idempotency.set(slot, { body: raw, purchaseId: p.purchaseId });
    return [201, p];
  } catch (err) {
    if (err instanceof Problem && err.status < 500) idempotency.set(slot, { body: raw, problem: err });
    else idempotency.delete(slot);
    throw err;
  }
}

http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", async () => {
    let status, body, headers = {};
    try {
      [status, body, headers = {}] = await route(req, Buffer.concat(chunks));
      if (status === 201) headers.Location = `/purchases/${body.purchaseId}`;
    } catch (err) {
      const p = err instanceof Problem ? err : new Problem(500, "internal", "Internal error", String(err));
      if (!(err instanceof Problem)) console.error(err);
      status = p.status;
      body = { type: `https://caas-sim.dev/problems/${p.kind}`, title: p.title, status: p.status,
               ...(p.message ? { detail: p.message } : {}) };
      if (status === 401 && p.kind === "unauthenticated") headers["WWW-Authenticate"] = 'Bearer realm="caas"';
      if (p.extra.retryAfter) headers["Retry-After"] = String(p.extra.retryAfter);
    }
    const type = status >= 400 ? "application/problem+json" : "application/json";
    res.writeHead(status, body === undefined ? headers : { "Content-Type": type, ...headers });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  });
}).listen(PORT, "127.0.0.1", () => {
  console.log(`node core on http://127.0.0.1:${PORT} (clock ${MODE === "scaled" ? `scaled x${SCALE}` : "real"} ` +
              `at ${iso()}), iot ${IOT}, payments ${PAYMENTS}`);
});
