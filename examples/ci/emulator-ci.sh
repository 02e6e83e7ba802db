#!/usr/bin/env bash
# A studio's CI job against the local Edgegap emulator: the real server under the real sidecar,
# two deployments at once, a scripted match on each over their external ports, then both
# self-stops and their stored logs checked; meanwhile a no-show rehearsal: a matchmaker match of
# two tickets where nobody connects, which must stop itself with reason no_show. Any failure prints the emulator's request log, the
# deployments' internals and their logs, and exits 1. Run from the repository root:
#
#     examples/ci/emulator-ci.sh
#
# Environment (all optional):
#   SIDECAR_CMD   how to run the sidecar           (default: edgegap-sidecar)
#   PYTHON        the Python of the game and bots  (default: python3)
#   GAME_CMD      the game server command          (default: the example UDP game)
#   BOTS_CMD      the scripted match, given --port (default: the example bots)
#   CI_TIMEOUT    seconds for each wait            (default: 60)
#   TIME_TO_DEPLOY seconds the server may take to listen on its port (default: 30)
#   EMULATOR_FLAGS more `emulate` flags, e.g. "--isolation ports" or "--rate-limits"
#   NO_SHOW_TIMEOUT the rehearsal's SIDECAR_NO_SHOW_TIMEOUT (default: 3s)
# Needs curl and python3 (for JSON); everything listens on 127.0.0.1 and stops at exit.
set -Eeuo pipefail

SIDECAR_CMD=${SIDECAR_CMD:-edgegap-sidecar}
PYTHON=${PYTHON:-python3}
GAME_CMD=${GAME_CMD:-"$PYTHON examples/python_game/server.py"}
BOTS_CMD=${BOTS_CMD:-"$PYTHON examples/python_game/bots.py --count 2 --rounds 3 --seed 7"}
CI_TIMEOUT=${CI_TIMEOUT:-60}
TIME_TO_DEPLOY=${TIME_TO_DEPLOY:-30}
EMULATOR_FLAGS=${EMULATOR_FLAGS:-}
NO_SHOW_TIMEOUT=${NO_SHOW_TIMEOUT:-3s}
TOKEN="authorization: token ci-local"

WORK=$(mktemp -d)
EMULATOR_PID=""
URL=""
IDS=()
NO_SHOW_ID=""

cleanup() {
    if [ -n "$EMULATOR_PID" ] && kill -0 "$EMULATOR_PID" 2>/dev/null; then
        kill -TERM "$EMULATOR_PID"   # it stops every deployment (SIGTERM, then SIGKILL)
        wait "$EMULATOR_PID" || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

json() {  # json EXPRESSION: evaluate a Python expression over the JSON on stdin, bound to `d`
    "$PYTHON" -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

fail() {
    echo "CI FAILED: $*" >&2
    if [ -n "$URL" ]; then
        echo "--- emulator request log (tokens redacted)" >&2
        curl -sS "$URL/_emulator/requests" | "$PYTHON" -m json.tool >&2 || true
        for id in "${IDS[@]}" $NO_SHOW_ID; do
            echo "--- deployment $id" >&2
            curl -sS "$URL/_emulator/deployments/$id" | "$PYTHON" -m json.tool >&2 || true
            echo "--- its logs (last 40 lines)" >&2
            curl -sS "$URL/_emulator/deployments/$id/logs" | tail -n 40 >&2 || true
        done
    fi
    echo "--- emulator output" >&2
    cat "$WORK/emulator.log" >&2 || true
    exit 1
}
trap 'trap - ERR; fail "unexpected error at line $LINENO"' ERR

echo "== start the emulator (free port, URL in a file)"
# restart policy never: a server that exits ends its deployment, as Edgegap recommends.
# shellcheck disable=SC2086  # EMULATOR_FLAGS is a list of flags
$SIDECAR_CMD emulate --port 0 --url-file "$WORK/url" --status-step 0.1 \
    --restart-policy never --time-to-deploy "$TIME_TO_DEPLOY" $EMULATOR_FLAGS \
    --app game="$SIDECAR_CMD run -- $GAME_CMD" >"$WORK/emulator.log" 2>&1 &
EMULATOR_PID=$!
for _ in $(seq 1 $((CI_TIMEOUT * 10))); do
    [ -s "$WORK/url" ] && break
    kill -0 "$EMULATOR_PID" 2>/dev/null || fail "the emulator exited at start-up"
    sleep 0.1
done
[ -s "$WORK/url" ] || fail "the emulator did not start within ${CI_TIMEOUT}s"
URL=$(cat "$WORK/url")
curl -fsS "$URL/_emulator/health" | json '"isolation: " + d["isolation"] + " (" + d["isolation_note"] + ")"'

echo "== deploy two deployments at once"
BODY='{"application": "game", "version": "ci",
       "users": [{"user_type": "ip_address", "user_data": {"ip_address": "127.0.0.1"}}],
       "environment_variables": [
         {"key": "SIDECAR_LOG_STORAGE", "value": "true", "is_hidden": false},
         {"key": "SIDECAR_MATCH_END_GRACE", "value": "1s", "is_hidden": false}]}'
DEPLOY_PIDS=()
for n in 1 2; do
    curl -fsS -X POST "$URL/deployments" -H "$TOKEN" -H 'content-type: application/json' \
        -d "$BODY" -o "$WORK/deploy-$n.json" &
    DEPLOY_PIDS+=($!)
done
for pid in "${DEPLOY_PIDS[@]}"; do
    wait "$pid" || fail "a deploy call failed"
done
for n in 1 2; do
    IDS+=("$(json 'd["request_id"]' <"$WORK/deploy-$n.json")")
done
echo "deployments: ${IDS[*]}"

echo "== no-show rehearsal: a matchmaker match of two tickets where nobody connects"
curl -fsS -X POST "$URL/_emulator/matches" -H "$TOKEN" -H 'content-type: application/json' \
    -d '{"app": "game", "tickets": [{}, {}], "deploy": {"version": "ci", "environment_variables": [
          {"key": "SIDECAR_LOG_STORAGE", "value": "true", "is_hidden": false},
          {"key": "SIDECAR_NO_SHOW_TIMEOUT", "value": "'"$NO_SHOW_TIMEOUT"'", "is_hidden": false}]}}' \
    -o "$WORK/no-show.json" || fail "the match call failed"
NO_SHOW_ID=$(json 'd["request_id"]' <"$WORK/no-show.json")
echo "no-show match: deployment $NO_SHOW_ID, tickets $(json '" ".join(d["ticket_ids"])' <"$WORK/no-show.json")"

echo "== wait for Status.READY (the platform's port readiness check)"
for id in "${IDS[@]}"; do
    curl -fsS "$URL/_emulator/deployments/$id/wait?status=Status.READY&timeout=$CI_TIMEOUT" \
        -o "$WORK/ready-$id.json" || fail "$id did not reach Status.READY"
    [ "$(json 'd["current_status"]' <"$WORK/ready-$id.json")" = "Status.READY" ] \
        || fail "$id: $(json 'd["current_status"] + " " + d["error_detail"]' <"$WORK/ready-$id.json")"
done

echo "== play a scripted match on each, through its external port"
BOT_PIDS=()
for id in "${IDS[@]}"; do
    read -r host port < <(json '" ".join([d["public_ip"], str(d["ports"]["gameport"]["external"])])' \
        <"$WORK/ready-$id.json")
    echo "$id: players connect to $host:$port"
    $BOTS_CMD --host "$host" --port "$port" >"$WORK/bots-$id.log" 2>&1 &
    BOT_PIDS+=($!)
done
for i in "${!BOT_PIDS[@]}"; do
    wait "${BOT_PIDS[$i]}" || { cat "$WORK/bots-${IDS[$i]}.log" >&2; fail "the match on ${IDS[$i]} failed"; }
done

echo "== both self-stop: wait for Status.TERMINATED"
for id in "${IDS[@]}"; do
    curl -fsS "$URL/_emulator/deployments/$id/wait?status=Status.TERMINATED&timeout=$CI_TIMEOUT" \
        >/dev/null || fail "$id did not reach Status.TERMINATED"
done

echo "== check each self-stop and its stored logs"
for id in "${IDS[@]}"; do
    accepted=$(curl -fsS "$URL/_emulator/requests?path_contains=/v1/self/stop/$id/&method=DELETE" \
        | json 'sum(200 <= e["status"] < 300 for e in d["requests"])')
    [ "$accepted" = "1" ] || fail "$id: $accepted accepted self-stops, expected exactly 1"
    curl -fsS "$URL/v1/deployment/$id/container-logs" -H "$TOKEN" -o "$WORK/logs-$id.json" \
        || fail "$id: its container logs were not kept"
    reason=$(json '[json.loads(line)["reason"] for line in d["logs"].splitlines()
                    if line.startswith("{") and "sidecar.stop" in line][-1]' <"$WORK/logs-$id.json") \
        || fail "$id: no sidecar.stop record in its stored logs"
    [ "$reason" = "match_ended" ] || fail "$id: stopped for $reason, expected match_ended"
    echo "$id: one accepted self-stop, logs kept, sidecar.stop reason $reason"
done
echo "== the no-show rehearsal stopped itself for no_show, its logs kept"
curl -fsS "$URL/_emulator/deployments/$NO_SHOW_ID/wait?status=Status.TERMINATED&timeout=$CI_TIMEOUT" \
    >/dev/null || fail "$NO_SHOW_ID (no-show) did not reach Status.TERMINATED"
curl -fsS "$URL/v1/deployment/$NO_SHOW_ID/container-logs" -H "$TOKEN" -o "$WORK/logs-no-show.json" \
    || fail "$NO_SHOW_ID: its container logs were not kept"
read -r reason missing < <(json '" ".join(str(x) for x in [[r["reason"], len(r["match"]["missing"])]
    for r in (json.loads(line) for line in d["logs"].splitlines()
              if line.startswith("{") and "sidecar.stop" in line)][-1])' <"$WORK/logs-no-show.json") \
    || fail "$NO_SHOW_ID: no sidecar.stop record with its match in its stored logs"
[ "$reason" = "no_show" ] || fail "$NO_SHOW_ID: stopped for $reason, expected no_show"
[ "$missing" = "2" ] || fail "$NO_SHOW_ID: $missing tickets missing, expected 2"
echo "$NO_SHOW_ID: sidecar.stop reason no_show, 2 tickets missing, logs kept"
echo "CI PASSED"
