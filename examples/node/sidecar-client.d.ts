// Types for sidecar-client.mjs (the edgegap-sidecar local API; README, *Local API*).
// tests/test_engine_packages.py checks that every method declared here exists at run time.

export declare const DEFAULT_BASE_URL: string;

/** The sidecar answered with an HTTP error; `code` and `apiMessage` come from its error body. */
export declare class SidecarAPIError extends Error {
  constructor(status: number, code: string, message: string);
  readonly status: number;
  readonly code: string;
  readonly apiMessage: string;
}

/** The sidecar could not be reached. */
export declare class SidecarConnectionError extends Error {
  constructor(message: string, options?: { cause?: unknown });
}

export type SidecarState =
  | "starting" | "ready" | "active" | "draining" | "stopping" | "stopped" | "failed" | "terminating";

export interface Roster {
  count: number;
  ids: string[];
}

export interface SidecarStatus {
  state: SidecarState;
  stop_reason: string | null;
  players: Roster;
  timers: Record<string, number>;
  uptime_s: number;
  dry_run: boolean;
  /** Seconds until the drain ends, only while draining. */
  drain_deadline_s?: number;
  [field: string]: unknown;
}

export interface SidecarTicket {
  id: string;
  team_id: string | null;
  group_id: string | null;
  player_ip: string | null;
  attributes: Record<string, unknown>;
  arrived: boolean;
  player_id: string | null;
}

export interface SidecarMatch {
  match_id: string | null;
  profile?: string | null;
  expected: number;
  arrived: number;
  quorum?: unknown;
  no_show_deadline_s?: number | null;
  tickets: SidecarTicket[];
  teams: Record<string, string[]>;
  result_delivery?: string;
  [field: string]: unknown;
}

export interface SidecarEvent {
  /** `state` for every state change; `data` is then the status. */
  event: string;
  data: SidecarStatus & Record<string, unknown>;
}

export interface Heartbeat {
  stop(): void;
}

export interface SidecarClientOptions {
  /** Default from SIDECAR_HOST / SIDECAR_PORT (http://127.0.0.1:8787). */
  baseUrl?: string;
  /** Default SIDECAR_API_TOKEN. */
  token?: string;
  timeoutMs?: number;
  /** Retry refused connections this long after creation (the sidecar may start after the game). */
  startupWaitMs?: number;
}

export declare class SidecarClient {
  constructor(options?: SidecarClientOptions);
  readonly baseUrl: string;
  timeoutMs: number;

  ready(): Promise<Record<string, unknown>>;
  health(): Promise<Record<string, unknown>>;
  activity(): Promise<Record<string, unknown>>;
  status(): Promise<SidecarStatus>;
  deployment(): Promise<Record<string, unknown>>;
  players(): Promise<Roster>;
  /** Resolves to the player count. */
  connect(playerId: string, options?: { ticketId?: string }): Promise<number>;
  /** Resolves to the player count. */
  disconnect(playerId: string): Promise<number>;
  setPlayers(roster: { ids: string[] } | { count: number }): Promise<Roster>;
  match(): Promise<SidecarMatch>;
  /** Rejects with SidecarAPIError 404 `unknown_ticket` for a ticket not in the match. */
  ticket(ticketId: string): Promise<SidecarTicket>;
  hold(seconds: number): Promise<Record<string, unknown>>;
  matchStart(matchId?: string): Promise<Record<string, unknown>>;
  matchEnd(options?: { result?: unknown; graceSeconds?: number }): Promise<Record<string, unknown>>;
  shutdown(options?: { reason?: string; graceSeconds?: number; logStorage?: string }): Promise<Record<string, unknown>>;
  startHeartbeat(intervalMs?: number, onError?: (error: Error) => void): Heartbeat;
  events(options?: { signal?: AbortSignal }): AsyncIterable<SidecarEvent>;
}
