# Not compiled in this repository's CI: it needs the Godot 4 engine.
# A node that talks to the edgegap-sidecar local API (README, *Local API*) with HTTPRequest:
#
#   POST /v1/ready                report_ready()                 then heartbeats start
#   POST /v1/health               the heartbeat Timer, every heartbeat_interval seconds
#   POST /v1/players/connect      player_connected(id)           body {"player_id": id}
#   POST /v1/players/disconnect   player_disconnected(id)        body {"player_id": id}
#   POST /v1/match/end            match_end(result, grace)       body {"result": ..., "grace_seconds"?: n}
#   GET  /v1/status               status()
#
# Every call is a coroutine returning {"ok": bool, "code": int, "body": Variant}; errors
# ({"error": {"code", "message"}}) are logged with push_warning, never fatal, because a
# sidecar hiccup must not take a live match down.
#
# Usage (dedicated server only): add as an autoload named Sidecar, then
#   await Sidecar.report_ready()          # once the game port is listening
#   Sidecar.player_connected(str(peer_id))
#   Sidecar.match_end({"winner": winner_name})
# The sidecar stops the deployment after its grace period; keep running until SIGTERM.
# (Names avoid Node.ready and Object.connect, which every Node already has.)
extends Node

## Local API URL; empty = http://127.0.0.1:$SIDECAR_PORT (default 8787).
@export var base_url := ""
## Seconds between heartbeats; keep well under SIDECAR_HEALTH_TIMEOUT (30 s).
@export var heartbeat_interval := 5.0
## Per-request timeout in seconds.
@export var request_timeout := 2.0

# From the environment, not an export, so the token never lands in a scene file.
var _token := ""
var _heartbeat: Timer


func _ready() -> void:
	if base_url.is_empty():
		var port := OS.get_environment("SIDECAR_PORT")
		base_url = "http://127.0.0.1:" + (port if not port.is_empty() else "8787")
	_token = OS.get_environment("SIDECAR_API_TOKEN")
	_heartbeat = Timer.new()
	_heartbeat.wait_time = heartbeat_interval
	_heartbeat.timeout.connect(func() -> void: _send(HTTPClient.METHOD_POST, "/v1/health"))
	add_child(_heartbeat)


## Tell the sidecar the server accepts players, then start heartbeats. Connection errors are
## retried for ~10 s because the game may start before its sidecar.
func report_ready() -> Dictionary:
	var answer := {}
	for _attempt in 10:
		answer = await _send(HTTPClient.METHOD_POST, "/v1/ready")
		if answer["code"] != 0:
			break
		await get_tree().create_timer(1.0).timeout
	if answer["ok"]:
		_send(HTTPClient.METHOD_POST, "/v1/health")
		_heartbeat.start()
	return answer


func player_connected(player_id: String) -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/players/connect", {"player_id": player_id})


func player_disconnected(player_id: String) -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/players/disconnect", {"player_id": player_id})


## Report the result (any JSON-able value, up to 16 KiB); grace_seconds < 0 keeps the default.
func match_end(result: Variant = null, grace_seconds := -1.0) -> Dictionary:
	var body := {"result": result}
	if grace_seconds >= 0.0:
		body["grace_seconds"] = grace_seconds
	return await _send(HTTPClient.METHOD_POST, "/v1/match/end", body)


func status() -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/status")


# One HTTPRequest per call: a single node handles one request at a time, and heartbeats must
# not queue behind a slow call.
func _send(method: HTTPClient.Method, path: String, body: Variant = null) -> Dictionary:
	var http := HTTPRequest.new()
	http.timeout = request_timeout
	add_child(http)
	var headers := PackedStringArray(["Accept: application/json"])
	var data := ""
	if body != null:
		headers.append("Content-Type: application/json")
		data = JSON.stringify(body)
	if not _token.is_empty():
		headers.append("Authorization: Bearer " + _token)
	var err := http.request(base_url + path, headers, method, data)
	if err != OK:
		http.queue_free()
		push_warning("[sidecar] %s: request not sent (%s)" % [path, error_string(err)])
		return {"ok": false, "code": 0, "body": null}
	var completed: Array = await http.request_completed
	http.queue_free()
	var result: int = completed[0]
	var code: int = completed[1]
	var parsed: Variant = JSON.parse_string((completed[3] as PackedByteArray).get_string_from_utf8())
	if result != HTTPRequest.RESULT_SUCCESS:
		push_warning("[sidecar] %s: sidecar unreachable (result %d)" % [path, result])
		return {"ok": false, "code": 0, "body": null}
	if code >= 400:
		var detail: Variant = parsed.get("error", parsed) if parsed is Dictionary else parsed
		push_warning("[sidecar] %s -> %d %s" % [path, code, str(detail)])
	return {"ok": code < 400, "code": code, "body": parsed}
