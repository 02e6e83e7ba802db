// Compiled in this repository's CI with mono-mcs against stand-ins of the few UnityEngine types
// it uses (tests/unity/), so it cannot rot; it runs only inside Unity (UnityEngine.Networking).
// Written against Unity 2021.3+ and the edgegap-sidecar local API (README, *Local API*):
//
//   POST /v1/ready                 ReportReady()
//   POST /v1/health                the heartbeat loop started by ReportReady()
//   POST /v1/players/connect       PlayerConnected(id)      body {"player_id": id}
//   POST /v1/players/disconnect    PlayerDisconnected(id)   body {"player_id": id}
//   POST /v1/match/end             MatchEnd(resultJson)     body {"result": <json>, "grace_seconds"?: n}
//
// Errors come back as {"error": {"code", "message"}}; they are logged and handed to the
// optional callback, never thrown, because a sidecar hiccup must not take a live match down.
//
// Usage: add this component to a GameObject in the server scene (server builds only), then
//   sidecar.ReportReady();                  // once the game port is open
//   sidecar.PlayerConnected(playerId);      // from your transport's connect callback
//   sidecar.MatchEnd("{\"winner\":\"p1\"}"); // when the match is decided
// The sidecar then stops the deployment (self-stop) after its grace period; keep running until
// Unity receives SIGTERM.

using System;
using System.Collections;
using System.Text;
using UnityEngine;
using UnityEngine.Networking;

public class EdgegapSidecar : MonoBehaviour
{
    [Tooltip("Local API URL; empty = http://127.0.0.1:$SIDECAR_PORT (default 8787)")]
    public string baseUrl = "";

    [Tooltip("Seconds between heartbeats; keep well under SIDECAR_HEALTH_TIMEOUT (30 s)")]
    public float heartbeatInterval = 5f;

    [Tooltip("Per-request timeout in seconds")]
    public int requestTimeout = 2;

    // Read from the environment, not the inspector, so it never ends up in a scene file.
    private string _token;
    private Coroutine _heartbeat;

    [Serializable] private class PlayerBody { public string player_id; }
    [Serializable] private class ErrorDetail { public string code; public string message; }
    [Serializable] private class ErrorBody { public ErrorDetail error; }

    private void Awake()
    {
        if (string.IsNullOrEmpty(baseUrl))
        {
            string port = Environment.GetEnvironmentVariable("SIDECAR_PORT");
            baseUrl = "http://127.0.0.1:" + (string.IsNullOrEmpty(port) ? "8787" : port);
        }
        _token = Environment.GetEnvironmentVariable("SIDECAR_API_TOKEN");
    }

    /// <summary>Tell the sidecar the server accepts players, then start heartbeats.</summary>
    public void ReportReady(Action<bool> done = null)
    {
        StartCoroutine(Send("POST", "/v1/ready", null, ok =>
        {
            if (ok && _heartbeat == null) _heartbeat = StartCoroutine(HeartbeatLoop());
            done?.Invoke(ok);
        }, attempts: 10));
    }

    public void PlayerConnected(string playerId, Action<bool> done = null)
    {
        string body = JsonUtility.ToJson(new PlayerBody { player_id = playerId });
        StartCoroutine(Send("POST", "/v1/players/connect", body, done));
    }

    public void PlayerDisconnected(string playerId, Action<bool> done = null)
    {
        string body = JsonUtility.ToJson(new PlayerBody { player_id = playerId });
        StartCoroutine(Send("POST", "/v1/players/disconnect", body, done));
    }

    /// <summary>Report the match result (any JSON text up to 16 KiB); the sidecar stops the deployment.</summary>
    public void MatchEnd(string resultJson = "null", float graceSeconds = -1f, Action<bool> done = null)
    {
        // JsonUtility cannot embed arbitrary JSON, so the envelope is written by hand.
        string body = "{\"result\":" + (string.IsNullOrEmpty(resultJson) ? "null" : resultJson);
        if (graceSeconds >= 0f)
            body += ",\"grace_seconds\":" + graceSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        body += "}";
        StartCoroutine(Send("POST", "/v1/match/end", body, done));
    }

    private IEnumerator HeartbeatLoop()
    {
        var wait = new WaitForSecondsRealtime(heartbeatInterval);
        while (true)
        {
            // A failed beat is logged and the loop goes on: the next one may well succeed.
            yield return Send("POST", "/v1/health", null, null);
            yield return wait;
        }
    }

    private void OnDestroy()
    {
        if (_heartbeat != null) StopCoroutine(_heartbeat);
    }

    // attempts > 1 retries connection errors only, for the start-up race where the game comes
    // up before its sidecar; HTTP errors are answers and are never retried.
    private IEnumerator Send(string method, string path, string jsonBody, Action<bool> done, int attempts = 1)
    {
        for (int attempt = 1; attempt <= attempts; attempt++)
        {
            using (var request = new UnityWebRequest(baseUrl + path, method))
            {
                request.downloadHandler = new DownloadHandlerBuffer();
                if (jsonBody != null)
                {
                    request.uploadHandler = new UploadHandlerRaw(Encoding.UTF8.GetBytes(jsonBody));
                    request.SetRequestHeader("Content-Type", "application/json");
                }
                if (!string.IsNullOrEmpty(_token))
                    request.SetRequestHeader("Authorization", "Bearer " + _token);
                request.timeout = requestTimeout;

                yield return request.SendWebRequest();

                if (request.result == UnityWebRequest.Result.Success)
                {
                    done?.Invoke(true);
                    yield break;
                }
                if (request.result == UnityWebRequest.Result.ProtocolError)
                {
                    var error = JsonUtility.FromJson<ErrorBody>(request.downloadHandler.text ?? "{}");
                    string detail = error?.error != null ? error.error.code + ": " + error.error.message : request.downloadHandler.text;
                    Debug.LogWarning($"[sidecar] {method} {path} -> {request.responseCode} {detail}");
                    done?.Invoke(false);
                    yield break;
                }
                Debug.LogWarning($"[sidecar] {method} {path} failed ({attempt}/{attempts}): {request.error}");
            }
            if (attempt < attempts) yield return new WaitForSecondsRealtime(1f);
        }
        done?.Invoke(false);
    }
}
