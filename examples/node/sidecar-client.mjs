// A dependency-free client for the edgegap-sidecar local API (README, *Local API*), for Node 20+ game
// servers. It uses the built-in fetch. The folder is an npm package (package.json, types in
// sidecar-client.d.ts): `npm install /path/to/examples/node`; or copy this one file.
//
//   import { SidecarClient } from "edgegap-sidecar-client";   // or "./sidecar-client.mjs"
//   const sidecar = new SidecarClient();          // SIDECAR_HOST / SIDECAR_PORT / SIDECAR_API_TOKEN
//   await sidecar.ready();
//   const heartbeat = sidecar.startHeartbeat(5000);
//   await sidecar.connect("player-1");
//   await sidecar.matchEnd({ result: { winner: "player-1" } });
//   heartbeat.stop();

export const DEFAULT_BASE_URL = "http://127.0.0.1:8787";

/** The sidecar answered with an HTTP error; `code` and `message` come from its error body. */
export class SidecarAPIError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.name = "SidecarAPIError";
    this.status = status;
    this.code = code;
    this.apiMessage = message;
  }
}

/** The sidecar could not be reached. */
export class SidecarConnectionError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = "SidecarConnectionError";
  }
}

function baseUrlFromEnv(env) {
  let host = env.SIDECAR_HOST || "127.0.0.1";
  // SIDECAR_HOST is the sidecar's bind address; a wildcard bind is reached over loopback.
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  return `http://${host}:${env.SIDECAR_PORT || "8787"}`;
}

function isConnectionRefused(error) {
  return error?.cause?.code === "ECONNREFUSED";
}

export class SidecarClient {
  /**
   * @param {object} [options]
   * @param {string} [options.baseUrl]  default from SIDECAR_HOST / SIDECAR_PORT
   * @param {string} [options.token]    default SIDECAR_API_TOKEN
   * @param {number} [options.timeoutMs=2000]
   * @param {number} [options.startupWaitMs=10000]  retry refused connections this long after
   *   creation, until the sidecar first answers (it may start after the game)
   */
  constructor({ baseUrl, token, timeoutMs = 2000, startupWaitMs = 10000 } = {}) {
    this.baseUrl = (baseUrl ?? baseUrlFromEnv(process.env)).replace(/\/+$/, "");
    // Kept off the instance's enumerable fields so logging the client never prints the token.
    Object.defineProperty(this, "token", {
      value: token ?? process.env.SIDECAR_API_TOKEN ?? "",
      enumerable: false,
    });
    this.timeoutMs = timeoutMs;
    this.startupDeadline = Date.now() + startupWaitMs;
    this.reached = false;
  }

  ready() { return this.#call("POST", "/v1/ready"); }
  health() { return this.#call("POST", "/v1/health"); }
  activity() { return this.#call("POST", "/v1/activity"); }
  status() { return this.#call("GET", "/v1/status"); }
  deployment() { return this.#call("GET", "/v1/deployment"); }
  players() { return this.#call("GET", "/v1/players"); }

  /**
   * @param {string} playerId
   * @param {{ticketId?: string}} [options]  the matchmaker ticket the player holds
   * @returns {Promise<number>} the player count
   */
  async connect(playerId, { ticketId } = {}) {
    const body = { player_id: playerId };
    if (ticketId !== undefined) body.ticket_id = ticketId;
    return (await this.#call("POST", "/v1/players/connect", body)).count;
  }

  /** @returns {Promise<number>} the player count */
  async disconnect(playerId) {
    return (await this.#call("POST", "/v1/players/disconnect", { player_id: playerId })).count;
  }

  /** Replace the roster: `{ ids: [...] }` or `{ count: n }`. */
  setPlayers({ ids, count } = {}) {
    if ((ids === undefined) === (count === undefined)) {
      throw new TypeError("setPlayers needs exactly one of ids or count");
    }
    return this.#call("PUT", "/v1/players", ids !== undefined ? { player_ids: ids } : { count });
  }

  /** The matchmaker's match: `GET /v1/match` (expected and arrived tickets, teams, quorum). */
  match() { return this.#call("GET", "/v1/match"); }

  /**
   * One ticket: `GET /v1/match/tickets/{id}`. Check a joiner's ticket in the handshake: a ticket
   * that is not in the match is a SidecarAPIError with status 404 and code `unknown_ticket`.
   */
  ticket(ticketId) { return this.#call("GET", `/v1/match/tickets/${encodeURIComponent(ticketId)}`); }

  hold(seconds) { return this.#call("POST", "/v1/hold", { seconds }); }

  matchStart(matchId) {
    return this.#call("POST", "/v1/match/start", matchId === undefined ? {} : { match_id: matchId });
  }

  /** Stop with `match_ended` after the grace period; `result` is any JSON up to 16 KiB. */
  matchEnd({ result, graceSeconds } = {}) {
    const body = {};
    if (result !== undefined) body.result = result;
    if (graceSeconds !== undefined) body.grace_seconds = graceSeconds;
    return this.#call("POST", "/v1/match/end", body);
  }

  shutdown({ reason, graceSeconds, logStorage } = {}) {
    const body = {};
    if (reason !== undefined) body.reason = reason;
    if (graceSeconds !== undefined) body.grace_seconds = graceSeconds;
    if (logStorage !== undefined) body.log_storage = logStorage;
    return this.#call("POST", "/v1/shutdown", body);
  }

  /**
   * Heartbeat every `intervalMs` (the first one now). Failures go to `onError` and the beat
   * goes on, so one blip never makes the sidecar think the game hung. The timer is unref'd:
   * it never keeps the process alive by itself.
   */
  startHeartbeat(intervalMs = 5000, onError = (error) => console.error(`sidecar heartbeat: ${error.message}`)) {
    const beat = () => this.health().catch(onError);
    beat();
    const timer = setInterval(beat, intervalMs);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }

  /**
   * Server-Sent Events from `GET /v1/events` as an async iterator of `{ event, data }`.
   * Pass an AbortSignal to stop listening; breaking out of `for await` also closes the stream.
   */
  async *events({ signal } = {}) {
    const response = await this.#fetch("GET", "/v1/events", undefined, { signal, accept: "text/event-stream" });
    if (!response.ok) throw await apiError(response);
    const decoder = new TextDecoder();
    let buffer = "";
    let event = "";
    let dataLines = [];
    try {
      for await (const chunk of response.body) {
        buffer += decoder.decode(chunk, { stream: true });
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (dataLines.length) yield { event: event || "message", data: parseData(dataLines.join("\n")) };
            event = "";
            dataLines = [];
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = value;
            else if (field === "data") dataLines.push(value);
          }
        }
      }
    } finally {
      // Stop reading (and close the socket) when the caller leaves the loop early.
      await response.body.cancel().catch(() => {});
    }
  }

  async #call(method, path, body) {
    const response = await this.#fetch(method, path, body, { timeoutMs: this.timeoutMs });
    const text = await response.text();
    if (!response.ok) throw apiErrorFromText(response.status, text);
    return text ? JSON.parse(text) : {};
  }

  async #fetch(method, path, body, { timeoutMs, signal, accept = "application/json" } = {}) {
    const headers = { accept };
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let delayMs = 50;
    for (;;) {
      const signals = [signal, timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined].filter(Boolean);
      try {
        const response = await fetch(this.baseUrl + path, {
          method,
          headers,
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: signals.length ? AbortSignal.any(signals) : undefined,
        });
        this.reached = true;
        return response;
      } catch (error) {
        const retry = isConnectionRefused(error) && !this.reached && Date.now() + delayMs < this.startupDeadline;
        if (!retry) {
          if (error.name === "AbortError" && signal?.aborted) throw error;
          throw new SidecarConnectionError(`${method} ${path}: sidecar at ${this.baseUrl} unreachable: ${error.cause?.code ?? error.message}`, { cause: error });
        }
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        delayMs = Math.min(delayMs * 2, 500);
      }
    }
  }
}

function parseData(text) {
  try {
    const value = JSON.parse(text);
    return value !== null && typeof value === "object" && !Array.isArray(value) ? value : { data: value };
  } catch {
    return { data: text };
  }
}

async function apiError(response) {
  return apiErrorFromText(response.status, await response.text());
}

function apiErrorFromText(status, text) {
  try {
    const { code, message } = JSON.parse(text).error;
    if (code !== undefined) return new SidecarAPIError(status, String(code), String(message));
  } catch {
    // Not the sidecar's error shape (a proxy, a crash page): fall through to the raw text.
  }
  return new SidecarAPIError(status, `http_${status}`, text.slice(0, 500));
}
