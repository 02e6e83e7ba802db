extends Node
## The game side of the edgegap-sidecar local API (README, *Local API*; the matchmaker routes in
## docs/integration.md), for Godot 4. The addon's plugin.gd registers this script as the
## autoload "Sidecar": it lives under the tree's root, so scene changes never free it and the
## heartbeat goes on. Parsed and linted in this repository's CI with gdtoolkit
## (tests/test_engine_packages.py); it needs Godot to run.
##
##   POST /v1/ready                report_ready()                then heartbeats start
##   POST /v1/health               health(), and a Timer every heartbeat_interval seconds
##   POST /v1/activity             activity()
##   POST /v1/players/connect      player_connected(id, ticket_id)
##   POST /v1/players/disconnect   player_disconnected(id)
##   PUT  /v1/players              set_players(ids) / set_player_count(n)
##   GET  /v1/players              players()
##   POST /v1/hold                 hold(seconds)
##   POST /v1/match/start          match_start(match_id)
##   POST /v1/match/end            match_end(result, grace_seconds)
##   POST /v1/shutdown             shutdown(reason, grace_seconds, log_storage)
##   GET  /v1/status               status()
##   GET  /v1/deployment           deployment()
##   GET  /v1/match                match_info()
##   GET  /v1/match/tickets/{id}   ticket(id)                    404 unknown_ticket: turn away
##   GET  /v1/events               signals state_changed, draining, stopping
##
## Every call is a coroutine returning {"ok": bool, "code": int, "body": Variant}; errors
## ({"error": {"code", "message"}}) are logged with push_warning, never fatal, because a
## sidecar hiccup must not take a live match down.
##
## Active only in a server: an export with the "dedicated_server" feature or a headless run
## (--headless). Elsewhere (the editor, clients) calls return {"ok": false, "code": 0,
## "skipped": true} unless force_enable is set or EDGEGAP_SIDECAR_ENABLE=true.
##
##   await Sidecar.report_ready()          # once the game port is listening
##   Sidecar.player_connected(str(peer_id))
##   Sidecar.draining.connect(func(status): _say_goodbye(status["stop_reason"]))
##   Sidecar.match_end({"winner": winner_name})
## (Names avoid Node.ready and Object.connect, which every Node already has.)

## Any state change the event stream reports: the new state and the whole status.
signal state_changed(state: String, status: Dictionary)
## Once, when a stop is decided (also when a stop skips the drain): tell the players goodbye.
signal draining(status: Dictionary)
## Once, when the self-stop is under way: the container ends soon; keep running until SIGTERM.
signal stopping(status: Dictionary)

const STOP_STATES := ["stopping", "stopped", "failed", "terminating"]

## Local API URL; empty = http://$SIDECAR_HOST:$SIDECAR_PORT (127.0.0.1:8787).
@export var base_url := ""
## Seconds between heartbeats; keep well under SIDECAR_HEALTH_TIMEOUT (30 s).
@export var heartbeat_interval := 5.0
## Per-request timeout in seconds.
@export var request_timeout := 2.0
## Follow GET /v1/events and emit state_changed, draining and stopping.
@export var listen_to_events := true
## Run outside a server too (the editor, a client): for tests against a local sidecar.
@export var force_enable := false

## The last state the event stream reported ("" before the first event).
var state := ""

# From the environment, not an export, so the token never lands in a scene file.
var _token := ""
var _heartbeat: Timer
var _events: HTTPClient
var _events_requested := false
var _events_retry_at := 0.0
var _events_buffer := ""
var _event_name := ""
var _event_data := PackedStringArray()
var _draining_emitted := false
var _stopping_emitted := false


func _ready() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS  # heartbeats also while the tree is paused
	if base_url.is_empty():
		base_url = _url_from_environment()
	_token = OS.get_environment("SIDECAR_API_TOKEN")
	_heartbeat = Timer.new()
	_heartbeat.wait_time = heartbeat_interval
	_heartbeat.timeout.connect(func() -> void: _send(HTTPClient.METHOD_POST, "/v1/health"))
	add_child(_heartbeat)
	if not is_active():
		print("[sidecar] inactive (not a dedicated server nor headless): calls are skipped")
		set_process(false)


func _process(_delta: float) -> void:
	if listen_to_events:
		_poll_events()


## True when calls reach the sidecar: a dedicated-server export, a headless run, or forced.
func is_active() -> bool:
	if force_enable or OS.get_environment("EDGEGAP_SIDECAR_ENABLE").to_lower() in ["1", "true"]:
		return true
	if OS.has_feature("editor"):
		return false
	return OS.has_feature("dedicated_server") or DisplayServer.get_name() == "headless"


## Tell the sidecar the server accepts players, then start heartbeats. Connection errors are
## retried for ~10 s because the game may start before its sidecar.
func report_ready() -> Dictionary:
	var answer := {}
	for _attempt in 10:
		answer = await _send(HTTPClient.METHOD_POST, "/v1/ready")
		if answer["code"] != 0 or answer.get("skipped", false):
			break
		await get_tree().create_timer(1.0).timeout
	if answer["ok"]:
		start_health_loop()
	return answer


## Heartbeat every heartbeat_interval seconds (report_ready() starts it).
func start_health_loop() -> void:
	if is_active() and _heartbeat.is_stopped():
		_send(HTTPClient.METHOD_POST, "/v1/health")
		_heartbeat.start()


func stop_health_loop() -> void:
	_heartbeat.stop()


func health() -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/health")


## Postpone the idle timers as if a player had just left.
func activity() -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/activity")


## A player joined; ticket_id (optional) is the matchmaker ticket it holds.
func player_connected(player_id: String, ticket_id := "") -> Dictionary:
	var body := {"player_id": player_id}
	if not ticket_id.is_empty():
		body["ticket_id"] = ticket_id
	return await _send(HTTPClient.METHOD_POST, "/v1/players/connect", body)


func player_disconnected(player_id: String) -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/players/disconnect", {"player_id": player_id})


## Replace the whole roster with these ids.
func set_players(player_ids: PackedStringArray) -> Dictionary:
	return await _send(HTTPClient.METHOD_PUT, "/v1/players", {"player_ids": Array(player_ids)})


## Replace the roster with this many anonymous players.
func set_player_count(count: int) -> Dictionary:
	return await _send(HTTPClient.METHOD_PUT, "/v1/players", {"count": count})


func players() -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/players")


## Suspend the idle stops for this many seconds (0 clears the hold).
func hold(seconds: float) -> Dictionary:
	return await _send(HTTPClient.METHOD_POST, "/v1/hold", {"seconds": seconds})


func match_start(match_id := "") -> Dictionary:
	var body := {} if match_id.is_empty() else {"match_id": match_id}
	return await _send(HTTPClient.METHOD_POST, "/v1/match/start", body)


## Report the result (any JSON-able value, up to 16 KiB); grace_seconds < 0 keeps the default.
func match_end(result: Variant = null, grace_seconds := -1.0) -> Dictionary:
	var body := {"result": result}
	if grace_seconds >= 0.0:
		body["grace_seconds"] = grace_seconds
	return await _send(HTTPClient.METHOD_POST, "/v1/match/end", body)


func shutdown(reason := "", grace_seconds := -1.0, log_storage := "") -> Dictionary:
	var body := {}
	if not reason.is_empty():
		body["reason"] = reason
	if grace_seconds >= 0.0:
		body["grace_seconds"] = grace_seconds
	if not log_storage.is_empty():
		body["log_storage"] = log_storage
	return await _send(HTTPClient.METHOD_POST, "/v1/shutdown", body)


func status() -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/status")


func deployment() -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/deployment")


## The matchmaker's match: expected and arrived tickets, teams, quorum.
func match_info() -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/match")


## Check a joiner's ticket in the handshake: code 200 with the ticket, or 404 unknown_ticket.
func ticket(ticket_id: String) -> Dictionary:
	return await _send(HTTPClient.METHOD_GET, "/v1/match/tickets/" + ticket_id.uri_encode())


# One HTTPRequest per call: a single node handles one request at a time, and heartbeats must
# not queue behind a slow call.
func _send(method: HTTPClient.Method, path: String, body: Variant = null) -> Dictionary:
	if not is_active():
		return {"ok": false, "code": 0, "body": null, "skipped": true}
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
	var text := (completed[3] as PackedByteArray).get_string_from_utf8()
	var parsed: Variant = JSON.parse_string(text) if not text.is_empty() else null
	if result != HTTPRequest.RESULT_SUCCESS:
		push_warning("[sidecar] %s: sidecar unreachable (result %d)" % [path, result])
		return {"ok": false, "code": 0, "body": null}
	if code >= 400:
		var detail: Variant = parsed.get("error", parsed) if parsed is Dictionary else parsed
		push_warning("[sidecar] %s -> %d %s" % [path, code, str(detail)])
	return {"ok": code < 400, "code": code, "body": parsed}


# The event stream: HTTPRequest cannot stream, so an HTTPClient polled every frame reads
# GET /v1/events as it arrives and reconnects (after a pause) when it ends.
func _poll_events() -> void:
	var now := Time.get_ticks_msec() / 1000.0
	if _events == null:
		if now < _events_retry_at:
			return
		_events = HTTPClient.new()
		_events_requested = false
		var address := _host_and_port()
		if _events.connect_to_host(address[0], address[1]) != OK:
			_events_closed(now)
		return
	_events.poll()
	match _events.get_status():
		HTTPClient.STATUS_CONNECTED:
			if not _events_requested:
				var headers := PackedStringArray(["Accept: text/event-stream"])
				if not _token.is_empty():
					headers.append("Authorization: Bearer " + _token)
				_events.request(HTTPClient.METHOD_GET, "/v1/events", headers)
				_events_requested = true
			else:
				_events_closed(now)  # the stream ended
		HTTPClient.STATUS_BODY:
			if _events.get_response_code() != 200:
				push_warning("[sidecar] events: %d" % _events.get_response_code())
				_events_closed(now)
				return
			var chunk := _events.read_response_body_chunk()
			if not chunk.is_empty():
				_events_feed(chunk.get_string_from_utf8())
		HTTPClient.STATUS_DISCONNECTED, HTTPClient.STATUS_CANT_CONNECT, \
		HTTPClient.STATUS_CANT_RESOLVE, HTTPClient.STATUS_CONNECTION_ERROR, \
		HTTPClient.STATUS_TLS_HANDSHAKE_ERROR:
			_events_closed(now)


func _events_closed(now: float) -> void:
	if _events != null:
		_events.close()
	_events = null
	_events_buffer = ""
	_events_retry_at = now + 1.0


func _events_feed(text: String) -> void:
	_events_buffer += text
	var newline := _events_buffer.find("\n")
	while newline >= 0:
		var line := _events_buffer.substr(0, newline).trim_suffix("\r")
		_events_buffer = _events_buffer.substr(newline + 1)
		_events_line(line)
		newline = _events_buffer.find("\n")


func _events_line(line: String) -> void:
	if line.is_empty():
		if not _event_data.is_empty():
			_on_event(_event_name if not _event_name.is_empty() else "message", "\n".join(_event_data))
		_event_name = ""
		_event_data = PackedStringArray()
		return
	if line.begins_with(":"):
		return  # keepalive comment
	var colon := line.find(":")
	var field := line if colon < 0 else line.substr(0, colon)
	var value := "" if colon < 0 else line.substr(colon + 1).trim_prefix(" ")
	if field == "event":
		_event_name = value
	elif field == "data":
		_event_data.append(value)


func _on_event(event_name: String, data: String) -> void:
	if event_name != "state":
		return
	var parsed: Variant = JSON.parse_string(data)
	if not parsed is Dictionary:
		return
	var new_state: String = parsed.get("state", "")
	if new_state != state:
		state = new_state
		state_changed.emit(new_state, parsed)
	var stop_under_way: bool = new_state in STOP_STATES
	if (new_state == "draining" or stop_under_way) and not _draining_emitted:
		_draining_emitted = true
		draining.emit(parsed)
	if stop_under_way and not _stopping_emitted:
		_stopping_emitted = true
		stopping.emit(parsed)


func _host_and_port() -> Array:
	var rest := base_url.trim_prefix("http://")
	var slash := rest.find("/")
	if slash >= 0:
		rest = rest.substr(0, slash)
	var colon := rest.rfind(":")
	if colon < 0:
		return [rest, 80]
	var host := rest.substr(0, colon).trim_prefix("[").trim_suffix("]")
	return [host, int(rest.substr(colon + 1))]


static func _url_from_environment() -> String:
	var host := OS.get_environment("SIDECAR_HOST")
	var port := OS.get_environment("SIDECAR_PORT")
	# SIDECAR_HOST is the sidecar's bind address; a wildcard bind is reached over loopback.
	if host.is_empty() or host == "0.0.0.0":
		host = "127.0.0.1"
	if host == "::":
		host = "::1"
	if ":" in host and not host.begins_with("["):
		host = "[" + host + "]"
	return "http://%s:%s" % [host, port if not port.is_empty() else "8787"]
