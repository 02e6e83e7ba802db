// com.edgegap.sidecar: the game side of the edgegap-sidecar local API (README, *Local API*;
// its matchmaker routes in docs/integration.md) for Unity 2021.3+. Compiled in this repository's CI with mono-mcs against
// stand-ins of the UnityEngine types it uses (tests/unity/), and run there through a scene change
// against a real sidecar (tests/test_unity_package.py).
//
// One persistent object per process. EdgegapSidecar.Instance creates it on first use (and, in a
// server, right after the first scene loads); it lives under DontDestroyOnLoad, so loading the
// next scene (lobby -> map) does not destroy it and the heartbeat goes on. A copy placed in a
// scene destroys itself when one already exists. Without a live heartbeat the sidecar stops the
// deployment as `unhealthy` after SIDECAR_HEALTH_TIMEOUT (30 s): a per-scene object that dies
// with its scene ends the match for everyone.
//
// Active only in a server: a UNITY_SERVER build (Dedicated Server target) or a player started with
// -batchmode. In a client, or in the editor, every call is skipped (Response.Skipped) unless
// EdgegapSidecar.ForceEnable is set or EDGEGAP_SIDECAR_ENABLE=true (for play-mode tests against a
// local sidecar).
//
//   POST /v1/ready                 Ready()                 then the health loop starts
//   POST /v1/health                Health(), and the loop every heartbeatInterval seconds
//   POST /v1/activity              Activity()
//   POST /v1/players/connect       PlayerConnected(id, ticketId)
//   POST /v1/players/disconnect    PlayerDisconnected(id)
//   PUT  /v1/players               SetPlayers(ids) / SetPlayerCount(n)
//   GET  /v1/players               GetPlayers()
//   POST /v1/hold                  Hold(seconds)
//   POST /v1/match/start           MatchStart(matchId)
//   POST /v1/match/end             MatchEnd(resultJson, graceSeconds)
//   POST /v1/shutdown              Shutdown(reason, graceSeconds, logStorage)
//   GET  /v1/status                GetStatus()
//   GET  /v1/deployment            GetDeployment()
//   GET  /v1/match                 GetMatch()
//   GET  /v1/match/tickets/{id}    GetTicket(id)             404 unknown_ticket: turn the joiner away
//   GET  /v1/events                StateChanged, StatusChanged, Draining, Stopping (C# events)
//
// Every call returns a SidecarCall: `yield return sidecar.Ready();` in a coroutine, or
// `var answer = await sidecar.Ready();` in async code (Task-based, so any Unity version; the
// continuation runs on the main thread). Failures are answers, never exceptions, and are logged.

using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;
using System.Threading.Tasks;
using UnityEngine;
using UnityEngine.Networking;

namespace Edgegap.Sidecar
{
    [DisallowMultipleComponent]
    public sealed class EdgegapSidecar : MonoBehaviour
    {
        [Tooltip("Local API URL; empty = http://$SIDECAR_HOST:$SIDECAR_PORT (127.0.0.1:8787)")]
        public string baseUrl = "";

        [Tooltip("Seconds between heartbeats; keep well under SIDECAR_HEALTH_TIMEOUT (30 s)")]
        public float heartbeatInterval = 5f;

        [Tooltip("Per-request timeout in seconds")]
        public int requestTimeout = 2;

        [Tooltip("Follow GET /v1/events and raise StateChanged, Draining and Stopping")]
        public bool listenToEvents = true;

        /// <summary>Run outside a server build too (the editor, a client build): for tests.</summary>
        public static bool ForceEnable;

        /// <summary>Create the instance right after the first scene loads (servers only).</summary>
        public static bool AutoCreate = true;

        /// <summary>Every state change the event stream reports (the status JSON parsed).</summary>
        public event Action<SidecarStatus> StatusChanged;
        /// <summary>The state moved (starting, ready, active, draining, stopping, ...).</summary>
        public event Action<SidecarState, SidecarStatus> StateChanged;
        /// <summary>Once, when a stop is decided: tell the players, save, wrap up. Raised also
        /// when a stop skips the drain (grace 0), just before Stopping.</summary>
        public event Action<SidecarStatus> Draining;
        /// <summary>Once, when the self-stop is under way (stopping, stopped, failed, terminating):
        /// the container ends soon; keep running until SIGTERM.</summary>
        public event Action<SidecarStatus> Stopping;

        private static EdgegapSidecar _instance;
        private static bool _quitting;

        // Read from the environment, never serialized, so the token never ends up in a scene file.
        private string _token;
        private string _resolvedUrl;
        private Coroutine _healthLoop;
        private Coroutine _eventsLoop;
        private UnityWebRequest _eventsRequest;
        private SidecarState _state = SidecarState.Unknown;
        private bool _drainingRaised;
        private bool _stoppingRaised;
        private bool _healthFailing;

        /// <summary>The one instance; created (persistent) on first use. Null while the
        /// application quits.</summary>
        public static EdgegapSidecar Instance
        {
            get
            {
                if (_instance == null && !_quitting)
                {
                    var host = new GameObject("EdgegapSidecar");
                    host.AddComponent<EdgegapSidecar>(); // Awake sets _instance
                }
                return _instance;
            }
        }

        /// <summary>True when calls reach the sidecar: a server build, batch mode, or forced.</summary>
        public static bool IsActive
        {
            get
            {
                if (ForceEnable || EnvFlag("EDGEGAP_SIDECAR_ENABLE")) return true;
#if UNITY_SERVER
                return true;
#else
                return Application.isBatchMode && !Application.isEditor;
#endif
            }
        }

        /// <summary>The last state the event stream reported.</summary>
        public SidecarState State { get { return _state; } }

        public string BaseUrl { get { return _resolvedUrl; } }

        // Static state survives "Enter Play Mode" without a domain reload: start clean.
        [RuntimeInitializeOnLoadMethod(RuntimeInitializeLoadType.SubsystemRegistration)]
        private static void ResetStatics()
        {
            _instance = null;
            _quitting = false;
        }

        [RuntimeInitializeOnLoadMethod(RuntimeInitializeLoadType.AfterSceneLoad)]
        private static void CreateInServer()
        {
            if (AutoCreate && IsActive)
            {
                var created = Instance;
            }
        }

        private void Awake()
        {
            if (_instance != null && _instance != this)
            {
                // A copy placed in a later scene: the persistent one already does the job.
                Debug.Log("[EdgegapSidecar] an instance already exists; this copy removes itself");
                Destroy(this);
                return;
            }
            _instance = this;
            // DontDestroyOnLoad works on root objects only.
            transform.SetParent(null);
            DontDestroyOnLoad(gameObject);
            Application.quitting += OnQuitting;

            _resolvedUrl = string.IsNullOrEmpty(baseUrl) ? UrlFromEnvironment() : baseUrl.TrimEnd('/');
            _token = Environment.GetEnvironmentVariable("SIDECAR_API_TOKEN") ?? "";
            if (!IsActive)
                Debug.Log("[EdgegapSidecar] inactive (not a server build nor batch mode): calls are skipped");
        }

        private void Start()
        {
            if (_instance != this) return; // a copy that removed itself
            if (IsActive && listenToEvents && _eventsLoop == null) _eventsLoop = StartCoroutine(EventsLoop());
        }

        private void OnDestroy()
        {
            if (_instance != this) return;
            _instance = null;
            Application.quitting -= OnQuitting;
            // The events coroutine dies with this object, and its `using` with it: end the stream here.
            if (_eventsRequest != null)
            {
                _eventsRequest.Abort();
                _eventsRequest.Dispose();
                _eventsRequest = null;
            }
        }

        private static void OnQuitting() { _quitting = true; }

        // ---- the routes --------------------------------------------------------------------

        /// <summary>The server accepts players. Retries while the sidecar starts (~10 s), then
        /// starts the health loop.</summary>
        public SidecarCall Ready()
        {
            return new SidecarCall(ReadyThenBeat());
        }

        private async Task<SidecarResponse> ReadyThenBeat()
        {
            var answer = await SendAsync("POST", "/v1/ready", null, 10);
            if (answer.Ok) StartHealthLoop();
            return answer;
        }

        public SidecarCall Health() { return Call("POST", "/v1/health", null); }

        /// <summary>Postpone the idle timers as if a player had just left.</summary>
        public SidecarCall Activity() { return Call("POST", "/v1/activity", null); }

        /// <summary>A player joined; ticketId (optional) is the matchmaker ticket it holds.</summary>
        public SidecarCall PlayerConnected(string playerId, string ticketId = null)
        {
            var body = new StringBuilder("{\"player_id\":").Append(Quote(playerId));
            if (!string.IsNullOrEmpty(ticketId)) body.Append(",\"ticket_id\":").Append(Quote(ticketId));
            return Call("POST", "/v1/players/connect", body.Append('}').ToString());
        }

        public SidecarCall PlayerDisconnected(string playerId)
        {
            return Call("POST", "/v1/players/disconnect", "{\"player_id\":" + Quote(playerId) + "}");
        }

        /// <summary>Replace the whole roster with these ids.</summary>
        public SidecarCall SetPlayers(IEnumerable<string> playerIds)
        {
            var body = new StringBuilder("{\"player_ids\":[");
            bool first = true;
            foreach (var id in playerIds)
            {
                if (!first) body.Append(',');
                body.Append(Quote(id));
                first = false;
            }
            return Call("PUT", "/v1/players", body.Append("]}").ToString());
        }

        /// <summary>Replace the roster with this many anonymous players.</summary>
        public SidecarCall SetPlayerCount(int count)
        {
            return Call("PUT", "/v1/players", "{\"count\":" + count.ToString(CultureInfo.InvariantCulture) + "}");
        }

        public SidecarCall GetPlayers() { return Call("GET", "/v1/players", null); }

        /// <summary>Suspend the idle stops for this long (0 clears the hold).</summary>
        public SidecarCall Hold(float seconds)
        {
            return Call("POST", "/v1/hold", "{\"seconds\":" + Number(seconds) + "}");
        }

        public SidecarCall MatchStart(string matchId = null)
        {
            return Call("POST", "/v1/match/start",
                string.IsNullOrEmpty(matchId) ? "{}" : "{\"match_id\":" + Quote(matchId) + "}");
        }

        /// <summary>Report the result (any JSON text up to 16 KiB, e.g. from JsonUtility.ToJson);
        /// the sidecar drains for graceSeconds (negative: its default) and stops the deployment.</summary>
        public SidecarCall MatchEnd(string resultJson = null, float graceSeconds = -1f)
        {
            // JsonUtility cannot embed arbitrary JSON, so the envelope is written by hand.
            var body = new StringBuilder("{\"result\":").Append(string.IsNullOrEmpty(resultJson) ? "null" : resultJson);
            if (graceSeconds >= 0f) body.Append(",\"grace_seconds\":").Append(Number(graceSeconds));
            return Call("POST", "/v1/match/end", body.Append('}').ToString());
        }

        public SidecarCall Shutdown(string reason = null, float graceSeconds = -1f, string logStorage = null)
        {
            var fields = new List<string>();
            if (!string.IsNullOrEmpty(reason)) fields.Add("\"reason\":" + Quote(reason));
            if (graceSeconds >= 0f) fields.Add("\"grace_seconds\":" + Number(graceSeconds));
            if (!string.IsNullOrEmpty(logStorage)) fields.Add("\"log_storage\":" + Quote(logStorage));
            return Call("POST", "/v1/shutdown", "{" + string.Join(",", fields.ToArray()) + "}");
        }

        /// <summary>Body: parse with JsonUtility.FromJson&lt;SidecarStatus&gt;.</summary>
        public SidecarCall GetStatus() { return Call("GET", "/v1/status", null); }

        public SidecarCall GetDeployment() { return Call("GET", "/v1/deployment", null); }

        /// <summary>The matchmaker's match; body: JsonUtility.FromJson&lt;SidecarMatch&gt;.</summary>
        public SidecarCall GetMatch() { return Call("GET", "/v1/match", null); }

        /// <summary>Check a joiner's ticket in the handshake: 200 with the ticket, or 404
        /// unknown_ticket (turn the player away).</summary>
        public SidecarCall GetTicket(string ticketId)
        {
            return Call("GET", "/v1/match/tickets/" + Uri.EscapeDataString(ticketId ?? ""), null);
        }

        // ---- the health loop ----------------------------------------------------------------

        /// <summary>Heartbeat every heartbeatInterval seconds until StopHealthLoop; Ready()
        /// starts it. It runs on this persistent object, so scene loads do not stop it.</summary>
        public void StartHealthLoop()
        {
            if (_healthLoop == null && IsActive) _healthLoop = StartCoroutine(HealthLoop());
        }

        public void StopHealthLoop()
        {
            if (_healthLoop != null) StopCoroutine(_healthLoop);
            _healthLoop = null;
        }

        public bool HealthLoopRunning { get { return _healthLoop != null; } }

        private IEnumerator HealthLoop()
        {
            var wait = new WaitForSecondsRealtime(heartbeatInterval);
            while (true)
            {
                var beat = Call("POST", "/v1/health", null, quiet: true);
                yield return beat;
                // One line when the beat starts failing and one when it is back, not one a beat.
                if (!beat.Response.Ok && !_healthFailing)
                    Debug.LogWarning("[EdgegapSidecar] heartbeat failing: " + beat.Response);
                else if (beat.Response.Ok && _healthFailing)
                    Debug.Log("[EdgegapSidecar] heartbeat back");
                _healthFailing = !beat.Response.Ok;
                yield return wait;
            }
        }

        // ---- events (GET /v1/events, Server-Sent Events) --------------------------------------

        private IEnumerator EventsLoop()
        {
            float delay = 1f;
            while (true)
            {
                using (var request = new UnityWebRequest(_resolvedUrl + "/v1/events", "GET"))
                {
                    request.downloadHandler = new EventStreamHandler(this);
                    request.SetRequestHeader("Accept", "text/event-stream");
                    if (_token.Length > 0) request.SetRequestHeader("Authorization", "Bearer " + _token);
                    request.timeout = 0; // a stream: no overall timeout
                    _eventsRequest = request;
                    yield return request.SendWebRequest();
                    _eventsRequest = null;
                    if (request.responseCode == 200) delay = 1f;
                    else if (request.responseCode >= 400)
                        Debug.LogWarning("[EdgegapSidecar] events: " + request.responseCode + " " + request.downloadHandler.text);
                }
                // The stream ended (sidecar restarting, or going away): follow it again shortly.
                yield return new WaitForSecondsRealtime(delay);
                delay = Math.Min(delay * 2f, 10f);
            }
        }

        internal void OnServerEvent(string eventName, string data)
        {
            if (eventName != "state") return;
            SidecarStatus status;
            try { status = JsonUtility.FromJson<SidecarStatus>(data); }
            catch (Exception error)
            {
                Debug.LogWarning("[EdgegapSidecar] events: unreadable state: " + error.Message);
                return;
            }
            if (status == null) return;
            Raise(StatusChanged, status);
            var state = status.State;
            if (state != _state)
            {
                _state = state;
                var changed = StateChanged;
                if (changed != null)
                {
                    try { changed(state, status); }
                    catch (Exception error) { Debug.LogException(error); }
                }
            }
            bool stopping = state == SidecarState.Stopping || state == SidecarState.Stopped
                || state == SidecarState.Failed || state == SidecarState.Terminating;
            if ((state == SidecarState.Draining || stopping) && !_drainingRaised)
            {
                _drainingRaised = true;
                Raise(Draining, status);
            }
            if (stopping && !_stoppingRaised)
            {
                _stoppingRaised = true;
                Raise(Stopping, status);
            }
        }

        private static void Raise(Action<SidecarStatus> handlers, SidecarStatus status)
        {
            if (handlers == null) return;
            // A throwing handler must not break the stream for the others.
            try { handlers(status); }
            catch (Exception error) { Debug.LogException(error); }
        }

        // Parses the stream as it arrives (Unity calls ReceiveData on the main thread).
        private sealed class EventStreamHandler : DownloadHandlerScript
        {
            private readonly EdgegapSidecar _owner;
            private readonly Decoder _decoder = new UTF8Encoding(false).GetDecoder();
            private readonly StringBuilder _line = new StringBuilder();
            private readonly StringBuilder _data = new StringBuilder();
            private string _event = "";
            private char[] _chars = new char[4096];

            public EventStreamHandler(EdgegapSidecar owner) : base(new byte[4096]) { _owner = owner; }

            protected override bool ReceiveData(byte[] data, int dataLength)
            {
                if (data == null || dataLength < 1) return true;
                int needed = _decoder.GetCharCount(data, 0, dataLength);
                if (needed > _chars.Length) _chars = new char[needed];
                int count = _decoder.GetChars(data, 0, dataLength, _chars, 0);
                for (int i = 0; i < count; i++)
                {
                    char c = _chars[i];
                    if (c == '\n') { Line(_line.ToString().TrimEnd('\r')); _line.Length = 0; }
                    else _line.Append(c);
                }
                return _owner != null; // false aborts the stream once the owner is gone
            }

            private void Line(string line)
            {
                if (line.Length == 0)
                {
                    if (_data.Length > 0 && _owner != null)
                        _owner.OnServerEvent(_event.Length > 0 ? _event : "message", _data.ToString());
                    _event = "";
                    _data.Length = 0;
                    return;
                }
                if (line[0] == ':') return; // keepalive comment
                int colon = line.IndexOf(':');
                string field = colon < 0 ? line : line.Substring(0, colon);
                string value = colon < 0 ? "" : line.Substring(colon + 1);
                if (value.StartsWith(" ")) value = value.Substring(1);
                if (field == "event") _event = value;
                else if (field == "data")
                {
                    if (_data.Length > 0) _data.Append('\n');
                    _data.Append(value);
                }
            }
        }

        // ---- plumbing --------------------------------------------------------------------

        private SidecarCall Call(string method, string path, string jsonBody, bool quiet = false)
        {
            return new SidecarCall(SendAsync(method, path, jsonBody, 1, quiet));
        }

        // attempts > 1 retries connection errors only, for the start-up race where the game comes
        // up before its sidecar; HTTP errors are answers and are never retried.
        private async Task<SidecarResponse> SendAsync(string method, string path, string jsonBody, int attempts, bool quiet = false)
        {
            if (!IsActive) return new SidecarResponse { Skipped = true, ErrorMessage = "inactive" };
            SidecarResponse answer = null;
            for (int attempt = 1; attempt <= attempts; attempt++)
            {
                try
                {
                    using (var request = new UnityWebRequest(_resolvedUrl + path, method))
                    {
                        request.downloadHandler = new DownloadHandlerBuffer();
                        if (jsonBody != null)
                        {
                            request.uploadHandler = new UploadHandlerRaw(Encoding.UTF8.GetBytes(jsonBody));
                            request.SetRequestHeader("Content-Type", "application/json");
                        }
                        request.SetRequestHeader("Accept", "application/json");
                        if (_token.Length > 0) request.SetRequestHeader("Authorization", "Bearer " + _token);
                        request.timeout = requestTimeout;
                        await Completion(request.SendWebRequest());
                        answer = Read(request);
                    }
                }
                catch (Exception error)
                {
                    answer = new SidecarResponse { ErrorMessage = error.Message };
                }
                if (answer.Code != 0 || attempt == attempts) break;
                await Task.Delay(1000);
            }
            if (!answer.Ok && !quiet) Debug.LogWarning("[EdgegapSidecar] " + method + " " + path + " -> " + answer);
            return answer;
        }

        // AsyncOperation.completed fires on the main thread (at once if it is already done).
        private static Task Completion(AsyncOperation operation)
        {
            var done = new TaskCompletionSource<bool>();
            operation.completed += _ => done.TrySetResult(true);
            return done.Task;
        }

        [Serializable] private class ErrorDetail { public string code; public string message; }
        [Serializable] private class ErrorBody { public ErrorDetail error; }

        private static SidecarResponse Read(UnityWebRequest request)
        {
            string text = request.downloadHandler != null ? request.downloadHandler.text : null;
            var answer = new SidecarResponse { Code = request.responseCode, Body = text };
            if (request.result == UnityWebRequest.Result.Success)
            {
                answer.Ok = true;
                return answer;
            }
            if (request.result != UnityWebRequest.Result.ProtocolError)
            {
                answer.Code = 0;
                answer.ErrorMessage = request.error;
                return answer;
            }
            ErrorBody error = null;
            try { error = JsonUtility.FromJson<ErrorBody>(string.IsNullOrEmpty(text) ? "{}" : text); }
            catch (Exception) { }
            if (error != null && error.error != null && !string.IsNullOrEmpty(error.error.code))
            {
                answer.ErrorCode = error.error.code;
                answer.ErrorMessage = error.error.message;
            }
            else
            {
                answer.ErrorCode = "http_" + request.responseCode;
                answer.ErrorMessage = text;
            }
            return answer;
        }

        private static string UrlFromEnvironment()
        {
            string host = Environment.GetEnvironmentVariable("SIDECAR_HOST");
            string port = Environment.GetEnvironmentVariable("SIDECAR_PORT");
            // SIDECAR_HOST is the sidecar's bind address; a wildcard bind is reached over loopback.
            if (string.IsNullOrEmpty(host) || host == "0.0.0.0") host = "127.0.0.1";
            if (host == "::") host = "::1";
            if (host.Contains(":") && !host.StartsWith("[")) host = "[" + host + "]";
            return "http://" + host + ":" + (string.IsNullOrEmpty(port) ? "8787" : port);
        }

        private static bool EnvFlag(string name)
        {
            string value = Environment.GetEnvironmentVariable(name);
            return value == "1" || string.Equals(value, "true", StringComparison.OrdinalIgnoreCase);
        }

        private static string Number(float value)
        {
            return value.ToString("R", CultureInfo.InvariantCulture);
        }

        // A JSON string literal (player ids are printable, but quotes and backslashes happen).
        private static string Quote(string value)
        {
            var quoted = new StringBuilder("\"");
            foreach (char c in value ?? "")
            {
                switch (c)
                {
                    case '"': quoted.Append("\\\""); break;
                    case '\\': quoted.Append("\\\\"); break;
                    default:
                        if (c < ' ') quoted.Append("\\u").Append(((int)c).ToString("x4"));
                        else quoted.Append(c);
                        break;
                }
            }
            return quoted.Append('"').ToString();
        }
    }
}
