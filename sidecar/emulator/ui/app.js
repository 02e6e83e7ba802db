// The emulator's dashboard: polls the /_emulator/ JSON routes once a second and draws them.
// Plain script, no build step, no library. Every value from the emulator (and every line a game
// printed) goes into the page as text (textContent / SVG text nodes), never as markup.
// timeline.js draws the timeline and match.js the matches; both load before this file, which
// starts the page, so everything they call is defined by then.
"use strict";

const POLL_MS = 1000;
const HEALTH_MS = 10000;
const LOG_TAIL = 300;
const STATUS_COLORS = {
  "Status.INITIALIZING": "#94a3b8",
  "Status.SEEKING": "#c4b5fd",
  "Status.SEEKED": "#a78bfa",
  "Status.SCANNING": "#93c5fd",
  "Status.DEPLOYING": "#3b82f6",
  "Status.READY": "#22c55e",
  "Status.ERROR": "#ef4444",
  "Status.TERMINATING": "#f59e0b",
  "Status.TERMINATED": "#d1d5db",
};
const SIDECAR_STATE_COLORS = {
  starting: "#3b82f6", ready: "#22c55e", allocated: "#16a34a", active: "#15803d",
  draining: "#f59e0b", stopping: "#f59e0b", stopped: "#6b7280", failed: "#ef4444",
};
const SVG_NS = "http://www.w3.org/2000/svg";

// ---- the token: from #token=… (a fragment never reaches a server), else this tab's storage --

function readFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem("emulator-token", token);
    // Out of the address bar, the history and any screenshot.
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  // #id=<request id>: show that deployment rather than follow the newest.
  const id = params.get("id");
  if (id) {
    view.selected = id;
    view.pinned = true;
  }
}

function token() {
  // Without --api-token the control API needs no token, and platform calls (stop) take any.
  return sessionStorage.getItem("emulator-token") || "dashboard";
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = { authorization: `token ${token()}`, ...(options.headers || {}) };
  const answer = await fetch(path, { ...options, headers, cache: "no-store" });
  if (answer.status === 401) {
    showTokenForm();
    throw new Unauthorized(path);
  }
  const text = await answer.text();
  let body = text;
  try { body = JSON.parse(text); } catch (_) { /* not JSON: keep the text */ }
  return { status: answer.status, ok: answer.ok, body };
}

function showTokenForm() {
  document.getElementById("token-form").hidden = false;
  setConnection("token needed", "down");
}

// ---- small DOM helpers ----------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function kvTable(rows) {
  const table = el("table", { class: "kv" });
  for (const [name, value, extra] of rows) {
    const cell = el("td", extra || {}, value instanceof Node ? value : String(value ?? "—"));
    table.append(el("tr", {}, el("th", {}, name), cell));
  }
  return table;
}

function replace(id, ...children) {
  document.getElementById(id).replaceChildren(...children);
}

function shortStatus(status) {
  return String(status).replace(/^Status\./, "");
}

function statusBadge(node, status) {
  node.textContent = shortStatus(status);
  node.style.background = STATUS_COLORS[status] || "#6b7280";
  node.style.color = status === "Status.TERMINATED" ? "#374151" : "#fff";
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  const s = Number(value);
  if (s >= 3600) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  // Whole seconds rounded down: 119.6 s is "1m 59s", never "1m 60s".
  if (s >= 60) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  return `${s.toFixed(1)} s`;
}

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function setConnection(text, kind) {
  const node = document.getElementById("connection");
  node.textContent = text;
  node.className = `pill ${kind || ""}`;
}

// ---- state ----------------------------------------------------------------------------------

const view = {
  deployments: [],
  now: Date.now() / 1000,
  selected: null,
  // The user picked one: do not jump to newer deployments on our own.
  pinned: false,
  envFor: null,
  // The selected deployment's masked environment, fetched again at each of its status changes.
  env: null,
  busy: false,
};

// ---- the selected deployment ----------------------------------------------------------------

function select(requestId, byUser) {
  if (byUser) view.pinned = true;
  if (view.selected === requestId) return;
  view.selected = requestId;
  view.envFor = null;
  view.env = null;
  document.getElementById("action-result").hidden = true;
  replace("logs");
  drawTimeline();
  refreshDetail().catch(reportError);
}

function current() {
  return view.deployments.find((d) => d.request_id === view.selected);
}

async function refreshDetail() {
  const deployment = current();
  const section = document.getElementById("detail");
  if (!deployment) { section.hidden = true; return; }
  section.hidden = false;
  const id = deployment.request_id;
  const base = `/_emulator/deployments/${encodeURIComponent(id)}`;
  const running = deployment.current_status !== "Status.TERMINATED";

  document.getElementById("detail-id").textContent = id;
  document.getElementById("detail-app").textContent = deployment.app_name;
  statusBadge(document.getElementById("detail-status"), deployment.current_status);
  const stopButton = document.getElementById("stop-button");
  stopButton.disabled = !["Status.READY", "Status.ERROR", "Status.INITIALIZING", "Status.SEEKING",
    "Status.SEEKED", "Status.SCANNING", "Status.DEPLOYING"].includes(deployment.current_status);

  const askSidecar = (path) => (deployment.backed && running
    ? api(`${base}/sidecar/${path}`) : Promise.resolve(null));
  const [internals, logs, selfStops, faults, sidecar, match] = await Promise.all([
    api(base),
    api(`${base}/logs/masked?tail=${LOG_TAIL}`),
    api(`/_emulator/requests?path_contains=${encodeURIComponent(`/v1/self/stop/${id}/`)}`),
    api("/_emulator/faults"),
    askSidecar("v1/status"),
    // Only a match has one worth showing; match.js tells from the env whether it is one.
    view.env && view.env.MM_MATCH_ID ? askSidecar("v1/match") : Promise.resolve(null),
  ]);
  if (view.selected !== id) return; // the user moved on while we were asking
  if (view.envFor !== `${id} ${deployment.current_status}`) {
    const env = await api(`${base}/env/masked`);
    view.env = env.ok ? env.body : null;
    drawEnv(env.body);
    view.envFor = `${id} ${deployment.current_status}`;
  }
  drawMatch(deployment, view.env, match, sidecar, logs);
  drawNote(deployment, internals.body);
  drawSidecar(deployment, sidecar);
  drawPorts(internals.body);
  drawProcess(internals.body);
  drawSelfStops(selfStops.body);
  drawFaults(faults.body, id);
  drawLogs(logs);
}

function drawNote(deployment, internals) {
  const note = document.getElementById("detail-note");
  const parts = [];
  if (deployment.error_detail) parts.push(`error: ${deployment.error_detail}`);
  if (deployment.end_reason) parts.push(`ended: ${deployment.end_reason}`);
  if (internals && internals.logs && internals.logs.kept !== null) {
    parts.push(`logs ${internals.logs.kept ? "kept" : "discarded"} (${internals.logs.note})`);
  }
  note.textContent = parts.join(" · ");
  note.hidden = parts.length === 0;
}

function drawSidecar(deployment, answer) {
  if (!deployment.backed) {
    replace("sidecar", el("p", { class: "muted" }, "Simulated deployment: no process, no sidecar."));
    return;
  }
  if (answer === null) {
    replace("sidecar", el("p", { class: "muted" }, "The deployment has ended: its sidecar is gone."));
    return;
  }
  if (!answer.ok || typeof answer.body !== "object") {
    const why = answer.body && answer.body.message ? answer.body.message : `HTTP ${answer.status}`;
    replace("sidecar", el("p", { class: "muted", id: "sidecar-missing" },
      "No sidecar answers in this deployment (yet): ", why));
    return;
  }
  const status = answer.body;
  const state = el("span", { class: "state", id: "sidecar-state",
    style: { color: SIDECAR_STATE_COLORS[status.state] || "inherit" } }, status.state);
  const players = status.players || {};
  const ids = (players.ids || []).join(", ");
  const stop = status.stop || {};
  const rows = [
    ["state", state],
    ["stop reason", status.stop_reason ?? "—"],
    ["players", `${players.count ?? 0}${ids ? ` (${ids})` : ""}`],
    ["uptime", seconds(status.uptime_s)],
    ["self-stop attempts", `${stop.attempts ?? 0}${stop.last_error ? ` · last error: ${stop.last_error}` : ""}`],
  ];
  if (status.dry_run) rows.push(["dry run", "yes: the self-stop is not sent"]);
  const timers = Object.entries(status.timers || {});
  const timerTable = timers.length
    ? kvTable(timers.map(([name, left]) => [name, seconds(left), { class: "num" }]))
    : el("p", { class: "muted" }, "No timer running.");
  replace("sidecar", kvTable(rows), el("h3", {}, "Timers (time left)"), timerTable);
}

function drawPorts(internals) {
  const ports = Object.entries((internals && internals.ports) || {});
  if (!ports.length) { replace("ports", el("p", { class: "muted" }, "No port.")); return; }
  replace("ports", kvTable(ports.map(([name, port]) => [
    name, `${port.protocol} ${port.internal} → ${port.reach}${port.to_check ? " (checked)" : ""}`,
  ])));
}

function drawProcess(internals) {
  if (!internals || typeof internals !== "object") return;
  const crash = internals.crash_data || {};
  replace("process", kvTable([
    ["backed", internals.backed ? `yes (${internals.isolation} isolation)` : "no (simulated)"],
    ["pid", internals.pid ?? "—"],
    ["restarts", crash.restart_count ?? 0],
    ["last exit", crash.exit_code ?? "—"],
  ]));
}

function drawSelfStops(body) {
  const calls = (body && body.requests) || [];
  if (!calls.length) {
    replace("self-stops", el("p", { class: "muted" }, "None yet."));
    return;
  }
  replace("self-stops", kvTable(calls.slice(-10).map((call) => [
    clock(call.timestamp),
    `${call.method} → ${call.status}${call.fault ? " (injected fault)" : ""} in ${Math.round(call.duration_ms)} ms`,
  ])));
}

function drawFaults(body, id) {
  const faults = ((body && body.faults) || []).filter((f) => f.request_id === null || f.request_id === id);
  if (!faults.length) { replace("faults", el("p", { class: "muted" }, "No fault pending.")); return; }
  replace("faults", kvTable(faults.map((fault) => [
    fault.target,
    `${fault.status ?? "normal answer"}${fault.delay_seconds ? ` after ${fault.delay_seconds} s` : ""}` +
      ` · ${fault.remaining ?? "∞"} left${fault.request_id ? "" : " · any deployment"}` +
      `${fault.active ? "" : ` · starts in ${fault.starts_in} s`}`,
  ])));
}

function drawLogs(answer) {
  const pre = document.getElementById("logs");
  const source = document.getElementById("logs-source");
  if (!answer.ok) {
    source.textContent = "";
    pre.textContent = "(no logs)";
    return;
  }
  const { lines, total_lines: total } = answer.body;
  source.textContent = answer.body.source === "logs"
    ? `(last ${lines.length} of ${total} lines)`
    : "(discarded at the stop: the last output the emulator kept)";
  const text = lines.join("\n");
  if (pre.textContent === text) return;
  const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
  pre.textContent = text;
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

function drawEnv(env) {
  if (!env || typeof env !== "object") return;
  const names = Object.keys(env).sort();
  replace("env", kvTable(names.map((name) => [name, env[name]])));
}

// ---- actions --------------------------------------------------------------------------------

function actionResult(text, ok) {
  const node = document.getElementById("action-result");
  node.textContent = text;
  node.className = `note${ok ? " ok" : ""}`;
  node.hidden = false;
}

function failure(answer) {
  return (answer.body && answer.body.message) || `HTTP ${answer.status}`;
}

async function stopSelected() {
  const id = view.selected;
  if (!id) return;
  const answer = await api(`/v1/stop/${encodeURIComponent(id)}`, { method: "DELETE" });
  actionResult(answer.ok
    ? `Stop requested (DELETE /v1/stop answered ${answer.status}).`
    : `Stop refused: ${failure(answer)}`, answer.ok);
  await refresh();
}

async function injectFault(event) {
  event.preventDefault();
  const id = view.selected;
  const number = (field) => Number(document.getElementById(field).value);
  const body = {
    target: document.getElementById("fault-target").value,
    status: number("fault-status") || null,
    count: number("fault-count") || 1,
    delay_seconds: number("fault-delay") || 0,
    request_id: id,
  };
  const answer = await api("/_emulator/faults", {
    method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" },
  });
  actionResult(answer.ok
    ? `Fault queued: the next ${body.count} ${body.target} call(s) of ${id} answer ${body.status ?? "normally"}` +
      `${body.delay_seconds ? ` after ${body.delay_seconds} s` : ""}.`
    : `Fault refused: ${failure(answer)}`, answer.ok);
  await refresh();
}

// ---- the loop -------------------------------------------------------------------------------

function reportError(error) {
  if (error instanceof Unauthorized) return;
  setConnection("emulator unreachable", "down");
}

async function refreshHealth() {
  const health = await api("/_emulator/health");
  if (health.ok) {
    const b = health.body;
    document.getElementById("emulator-info").textContent =
      `${b.url} · ${b.isolation} isolation · apps: ${Object.keys(b.apps).join(", ") || "none"}`;
    fillMatchApps(b.apps);
  }
}

async function refresh() {
  const timeline = await api("/_emulator/timeline");
  if (!timeline.ok) throw new Error(`timeline: HTTP ${timeline.status}`);
  document.getElementById("token-form").hidden = true;
  view.deployments = timeline.body.deployments;
  view.now = timeline.body.now;
  if (!view.pinned || !current()) {
    // Follow the newest deployment that is still running (else the newest) until the user picks.
    const running = view.deployments.filter((d) => d.current_status !== "Status.TERMINATED");
    const newest = (running.length ? running : view.deployments).at(-1);
    view.selected = newest ? newest.request_id : null;
    if (!current()) view.pinned = false;
  }
  drawTimeline();
  await refreshDetail();
  setConnection(`live · ${clock(view.now)}`, "live");
}

async function loop() {
  if (!view.busy) {
    view.busy = true;
    try { await refresh(); } catch (error) { reportError(error); } finally { view.busy = false; }
  }
  setTimeout(loop, POLL_MS);
}

function start() {
  readFragment();
  drawLegend();
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = document.getElementById("token-input").value.trim();
    if (value) sessionStorage.setItem("emulator-token", value);
    document.getElementById("token-form").hidden = true;
    refreshHealth().catch(reportError);
  });
  document.getElementById("stop-button").addEventListener("click", () => stopSelected().catch(reportError));
  document.getElementById("fault-form").addEventListener("submit", (event) => injectFault(event).catch(reportError));
  document.getElementById("match-form").addEventListener("submit", (event) => makeMatch(event).catch(reportError));
  window.addEventListener("resize", drawTimeline);
  refreshHealth().catch(reportError);
  setInterval(() => refreshHealth().catch(reportError), HEALTH_MS);
  loop();
}

start();
