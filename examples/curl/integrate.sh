#!/usr/bin/env bash
# Talk to the edgegap-sidecar local API (README, *Local API*) from a game's start script, with curl only.
#
# Usage:  integrate.sh COMMAND [ARGS]
#   ready                     POST /v1/ready (retries while the sidecar is still starting)
#   health                    POST /v1/health, one heartbeat
#   heartbeat-loop [SECONDS]  a heartbeat every SECONDS (default 5) until killed; failures are
#                             logged and the loop goes on, so a blip never ends the game
#   connect ID | disconnect ID
#   players [COUNT]           GET /v1/players, or PUT the anonymous player count
#   match-start [MATCH_ID]
#   match-end [RESULT_JSON] [GRACE_SECONDS]
#   shutdown [REASON]
#   status | deployment       GET /v1/status | /v1/deployment
#   demo                      walk a whole match: ready, heartbeats, players, match end
#
# The functions can also be sourced: `source integrate.sh; sidecar_call POST /v1/ready`.
#
# Environment: SIDECAR_URL, or SIDECAR_HOST/SIDECAR_PORT (default http://127.0.0.1:8787);
# SIDECAR_API_TOKEN when the sidecar requires one. The token is handed to curl through its
# config on stdin, never on the command line, so it does not show in `ps`.
#
# A typical start script:
#   ./integrate.sh heartbeat-loop 5 &
#   ./my-game-server &          # the game itself calls ready / match-end, or:
#   ./integrate.sh ready
#   wait

set -euo pipefail

SIDECAR_URL="${SIDECAR_URL:-http://${SIDECAR_HOST:-127.0.0.1}:${SIDECAR_PORT:-8787}}"
SIDECAR_URL="${SIDECAR_URL/0.0.0.0/127.0.0.1}" # a wildcard bind is reached over loopback

sidecar_log() {
    echo "[sidecar-sh] $*" >&2
}

# json_string VALUE -> VALUE as a JSON string literal (ids are printable: quotes and
# backslashes are the only characters that need escaping).
json_string() {
    local value="${1//\\/\\\\}"
    printf '"%s"' "${value//\"/\\\"}"
}

# sidecar_call METHOD PATH [JSON_BODY] [EXTRA_CURL_ARGS...]
# Prints the response body; returns 1 with the API's error message on an HTTP error.
sidecar_call() {
    local method="$1" path="$2" body="${3:-}"
    shift $(($# < 3 ? $# : 3))
    local args=(--silent --show-error --max-time 5 -X "$method" -w '\n%{http_code}')
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    local config=""
    if [[ -n "${SIDECAR_API_TOKEN:-}" ]]; then
        config="header = \"Authorization: Bearer ${SIDECAR_API_TOKEN}\""
    fi
    local output status
    output="$(printf '%s\n' "$config" | curl --config - "${args[@]}" "$@" "${SIDECAR_URL}${path}")" || {
        sidecar_log "$method $path: sidecar unreachable at $SIDECAR_URL"
        return 1
    }
    status="${output##*$'\n'}"
    output="${output%$'\n'*}"
    if ((status >= 400)); then
        sidecar_log "$method $path failed: HTTP $status $output"
        return 1
    fi
    printf '%s\n' "$output"
}

sidecar_ready() {
    # The game may start before its sidecar: retry refused connections for ~15 s.
    sidecar_call POST /v1/ready "" --retry 6 --retry-connrefused --retry-delay 1
}

sidecar_health() { sidecar_call POST /v1/health; }

sidecar_heartbeat_loop() {
    local interval="${1:-5}" sleep_pid=""
    # Sleep in the background and wait for it, so a TERM ends the loop at once and takes the
    # sleep with it (an orphaned sleep would hold the caller's output pipe open).
    trap 'kill $sleep_pid 2>/dev/null; exit 0' TERM INT
    while true; do
        sidecar_call POST /v1/health >/dev/null || sidecar_log "heartbeat failed, retrying in ${interval}s"
        sleep "$interval" &
        sleep_pid=$!
        wait "$sleep_pid"
    done
}

sidecar_connect() { sidecar_call POST /v1/players/connect "{\"player_id\": $(json_string "$1")}"; }

sidecar_disconnect() { sidecar_call POST /v1/players/disconnect "{\"player_id\": $(json_string "$1")}"; }

sidecar_players() {
    if [[ $# -gt 0 ]]; then
        sidecar_call PUT /v1/players "{\"count\": $1}"
    else
        sidecar_call GET /v1/players
    fi
}

sidecar_match_start() {
    if [[ $# -gt 0 ]]; then
        sidecar_call POST /v1/match/start "{\"match_id\": $(json_string "$1")}"
    else
        sidecar_call POST /v1/match/start '{}'
    fi
}

# sidecar_match_end [RESULT_JSON] [GRACE_SECONDS]
sidecar_match_end() {
    local body="{\"result\": ${1:-null}"
    if [[ -n "${2:-}" ]]; then
        body+=", \"grace_seconds\": $2"
    fi
    sidecar_call POST /v1/match/end "$body}"
}

sidecar_shutdown() {
    if [[ $# -gt 0 ]]; then
        sidecar_call POST /v1/shutdown "{\"reason\": $(json_string "$1")}"
    else
        sidecar_call POST /v1/shutdown '{}'
    fi
}

sidecar_demo() {
    sidecar_log "ready: $(sidecar_ready)"
    sidecar_heartbeat_loop 1 &
    # Global, not local: the EXIT trap runs after this function has returned. The loop must
    # not outlive the script, whatever way the script ends.
    SIDECAR_HEARTBEAT_PID=$!
    trap 'kill "$SIDECAR_HEARTBEAT_PID" 2>/dev/null || true' EXIT
    sidecar_log "match start: $(sidecar_match_start demo-match)"
    sidecar_log "connect alice: $(sidecar_connect alice)"
    sidecar_log "connect bob: $(sidecar_connect bob)"
    sidecar_log "players: $(sidecar_players)"
    sidecar_log "disconnect alice: $(sidecar_disconnect alice)"
    sidecar_log "disconnect bob: $(sidecar_disconnect bob)"
    sidecar_log "match end: $(sidecar_match_end '{"winner": "bob", "scores": {"alice": 3, "bob": 5}}')"
    sidecar_log "status: $(sidecar_call GET /v1/status)"
}

sidecar_main() {
    local command="${1:-}"
    shift || true
    case "$command" in
    ready) sidecar_ready ;;
    health) sidecar_health ;;
    heartbeat-loop) sidecar_heartbeat_loop "$@" ;;
    connect) sidecar_connect "$1" ;;
    disconnect) sidecar_disconnect "$1" ;;
    players) sidecar_players "$@" ;;
    match-start) sidecar_match_start "$@" ;;
    match-end) sidecar_match_end "$@" ;;
    shutdown) sidecar_shutdown "$@" ;;
    status) sidecar_call GET /v1/status ;;
    deployment) sidecar_call GET /v1/deployment ;;
    demo) sidecar_demo ;;
    *)
        sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
        return 2
        ;;
    esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    sidecar_main "$@"
fi
