// The dashboard's matches: the "Make a match" form (POST /_emulator/matches) and, for a
// deployment made as a match, its panel: the tickets and who arrived, the no-show countdown and,
// once it stopped, why. Loaded before app.js, whose helpers (api, el, kvTable, replace, seconds,
// failure, select) these functions call when they run.
"use strict";

// What the sidecar last said about each match, by request id: once the deployment ends its
// sidecar is gone, and the panel keeps showing who had arrived.
const lastMatch = new Map();

// ---- making one -----------------------------------------------------------------------------

function fillMatchApps(apps) {
  const select = document.getElementById("match-app");
  const names = Object.keys(apps || {});
  if (select.options.length === names.length) return;
  // Apps backed by a process first: a match on one of them has a sidecar to watch.
  names.sort((a, b) => Number(Boolean(apps[b].backed)) - Number(Boolean(apps[a].backed)));
  select.replaceChildren(...names.map((name) => el("option", { value: name },
    `${name}${apps[name].backed ? "" : " (simulated)"}`)));
  document.getElementById("match-button").disabled = names.length === 0;
}

function matchBody() {
  const number = (id) => Number(document.getElementById(id).value);
  const teams = Math.max(1, Math.floor(number("match-teams")) || 1);
  const perTeam = Math.max(1, Math.floor(number("match-players")) || 1);
  const tickets = [];
  for (let player = 1; player <= perTeam; player += 1) {
    for (let team = 1; team <= teams; team += 1) tickets.push({ team: `team-${team}` });
  }
  const variables = [];
  const noShow = document.getElementById("match-no-show").value.trim();
  // Left empty, the sidecar's own default applies (60 s).
  if (noShow !== "") {
    variables.push({ key: "SIDECAR_NO_SHOW_TIMEOUT", value: `${noShow}s`, is_hidden: false });
  }
  return {
    app: document.getElementById("match-app").value,
    profile: "dashboard",
    tickets,
    deploy: { environment_variables: variables },
  };
}

async function makeMatch(event) {
  event.preventDefault();
  const body = matchBody();
  const answer = await api("/_emulator/matches", {
    method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" },
  });
  const note = document.getElementById("match-made");
  note.hidden = false;
  if (!answer.ok) {
    // The emulator's 400 names each field that did not fit: show them, not just "invalid".
    const details = (answer.body && Array.isArray(answer.body.details) ? answer.body.details : [])
      .map((d) => `${d.field}: ${d.error}`);
    note.className = "note";
    note.textContent = `Match refused (HTTP ${answer.status}): ${failure(answer)}` +
      `${details.length ? ` (${details.join("; ")})` : ""}`;
    delete note.dataset.requestId;
    return;
  }
  const made = answer.body;
  note.className = "note ok";
  note.textContent = `Match ${made.match_id}: deployment ${made.request_id}, ` +
    `${made.ticket_ids.length} tickets (${made.ticket_ids.join(", ")})`;
  note.dataset.requestId = made.request_id;
  view.pinned = true;
  view.selected = made.request_id;
  view.envFor = null;
  view.env = null;
  await refresh();
}

// ---- showing one ----------------------------------------------------------------------------

// The match as the matchmaker handed it to the deployment (its MM_* variables): known for any
// deployment made as a match, running or not, sidecar or not.
function matchFromEnv(env) {
  if (!env || !env.MM_MATCH_ID) return null;
  let ids = [];
  try { ids = JSON.parse(env.MM_TICKET_IDS || "[]"); } catch (_) { /* shown as no ticket */ }
  const tickets = (Array.isArray(ids) ? ids : []).map((id) => {
    let ticket = {};
    try { ticket = JSON.parse(env[`MM_TICKET_${id}`] || "{}") || {}; } catch (_) { /* bare id */ }
    return { id: String(id), team_id: ticket.team_id ?? null };
  });
  return { match_id: env.MM_MATCH_ID, profile: env.MM_MATCH_PROFILE || "", tickets };
}

// The `sidecar.stop` record the sidecar printed before its self-stop: it outlives the sidecar
// in the logs (or the last output the emulator keeps), with the reason and the missing tickets.
function stopRecord(logs) {
  const lines = (logs && logs.ok && logs.body && logs.body.lines) || [];
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const line = lines[i];
    if (!line.includes('"sidecar.stop"') || !line.includes("{")) continue;
    try {
      const record = JSON.parse(line.slice(line.indexOf("{")));
      if (record && record.event === "sidecar.stop") return record;
    } catch (_) { /* a game line that only looks like one */ }
  }
  return null;
}

function drawMatch(deployment, env, matchAnswer, statusAnswer, logs) {
  const panel = document.getElementById("match");
  const given = matchFromEnv(env);
  if (!given) { panel.hidden = true; return; }
  panel.hidden = false;
  const id = deployment.request_id;
  const running = deployment.current_status !== "Status.TERMINATED";
  const live = matchAnswer && matchAnswer.ok && typeof matchAnswer.body === "object"
    ? matchAnswer.body : null;
  const status = statusAnswer && statusAnswer.ok && typeof statusAnswer.body === "object"
    ? statusAnswer.body : null;
  const seen = lastMatch.get(id) || {};
  if (live) seen.match = live;
  if (status && status.stop_reason) seen.stop = { reason: status.stop_reason, detail: status.stop_detail };
  lastMatch.set(id, seen);
  const record = stopRecord(logs);
  const stop = record ? { reason: record.reason, detail: record.detail } : seen.stop;
  const missing = new Set((record && record.match && record.match.missing) || []);
  const known = seen.match;
  const byTicket = new Map(((known && known.tickets) || []).map((t) => [t.id, t]));

  const rows = [
    ["match", given.match_id],
    ["profile", given.profile || "—"],
  ];
  if (known) {
    rows.push(["arrived", `${known.arrived} of ${known.expected} (quorum ${known.quorum})`]);
    const left = known.no_show_deadline_s;
    rows.push(["no-show", el("span", { id: "no-show-countdown" },
      left !== null && left !== undefined && running && !stop
        ? `stops in ${seconds(left)} unless the quorum arrives`
        : stop ? "—" : "not running")]);
    // Once stopped, the record says how the delivery stood when the self-stop went ahead.
    const delivery = record && record.result_delivery ? record.result_delivery : known.result_delivery;
    rows.push(["result delivery", delivery ?? "—"]);
  } else if (deployment.backed && running) {
    rows.push(["arrived", el("span", { class: "muted" }, "waiting for its sidecar…")]);
  }
  if (stop) {
    rows.push(["stopped", el("span", { id: "match-stop", "data-reason": stop.reason },
      `${stop.reason}${stop.detail ? `: ${stop.detail}` : ""}`)]);
  }

  const tickets = el("table", { class: "kv", id: "match-tickets" },
    el("tr", {}, el("th", {}, "ticket"), el("th", {}, "team"), el("th", {}, "player")));
  for (const ticket of given.tickets) {
    const state = byTicket.get(ticket.id);
    const arrived = Boolean(state && state.arrived);
    let who = "not yet";
    if (arrived) who = `arrived as ${state.player_id}`;
    else if (missing.has(ticket.id) || (!running && known)) who = "never arrived";
    else if (!known) who = "—";
    tickets.append(el("tr", { "data-ticket-id": ticket.id, "data-arrived": String(arrived) },
      el("td", { class: "mono" }, ticket.id), el("td", {}, ticket.team_id ?? "—"),
      el("td", {}, who)));
  }
  replace("match-body", kvTable(rows), tickets);
}
