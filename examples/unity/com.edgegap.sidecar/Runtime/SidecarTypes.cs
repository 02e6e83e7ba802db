// Types of the com.edgegap.sidecar package: the answer of one call, the status the sidecar
// reports (GET /v1/status and every /v1/events state event), and the call handle that is both a
// coroutine yield instruction and a Task you can await.

using System;
using System.Runtime.CompilerServices;
using System.Threading.Tasks;
using UnityEngine;

namespace Edgegap.Sidecar
{
    /// <summary>The answer to one local-API call. Never thrown: a sidecar hiccup must not take a
    /// live match down, so failures are values (and logged once).</summary>
    public sealed class SidecarResponse
    {
        /// <summary>2xx from the sidecar.</summary>
        public bool Ok;
        /// <summary>HTTP status; 0 when the sidecar was unreachable or the call was skipped.</summary>
        public long Code;
        /// <summary>The JSON body as text (parse it with JsonUtility or your JSON library).</summary>
        public string Body;
        /// <summary>From the {"error": {"code", "message"}} body of an HTTP error.</summary>
        public string ErrorCode;
        public string ErrorMessage;
        /// <summary>True when the package is inactive (a client or the editor) and nothing was sent.</summary>
        public bool Skipped;

        public override string ToString()
        {
            if (Skipped) return "skipped (sidecar inactive in this build)";
            if (Ok) return Code.ToString();
            return Code == 0 ? "unreachable: " + ErrorMessage : Code + " " + ErrorCode + ": " + ErrorMessage;
        }
    }

    /// <summary>Lower-case states of the sidecar's lifecycle.</summary>
    public enum SidecarState { Unknown, Starting, Ready, Active, Draining, Stopping, Stopped, Failed, Terminating }

    [Serializable]
    public sealed class SidecarPlayers
    {
        public int count;
        public string[] ids;
    }

    /// <summary>The fields of GET /v1/status that games use (JsonUtility ignores the others).</summary>
    [Serializable]
    public sealed class SidecarStatus
    {
        public string state;
        public string stop_reason;
        public SidecarPlayers players;
        public float uptime_s;
        public bool dry_run;
        /// <summary>Seconds until the drain ends (only while draining; -1 otherwise).</summary>
        public float drain_deadline_s = -1f;

        public SidecarState State { get { return ParseState(state); } }

        public static SidecarState ParseState(string value)
        {
            switch (value)
            {
                case "starting": return SidecarState.Starting;
                case "ready": return SidecarState.Ready;
                case "active": return SidecarState.Active;
                case "draining": return SidecarState.Draining;
                case "stopping": return SidecarState.Stopping;
                case "stopped": return SidecarState.Stopped;
                case "failed": return SidecarState.Failed;
                case "terminating": return SidecarState.Terminating;
                default: return SidecarState.Unknown;
            }
        }
    }

    [Serializable]
    public sealed class SidecarTicket
    {
        public string id;
        public string team_id;
        public string group_id;
        public string player_ip;
        public bool arrived;
        public string player_id;
    }

    /// <summary>GET /v1/match. Attributes and teams are in the raw Body.</summary>
    [Serializable]
    public sealed class SidecarMatch
    {
        public string match_id;
        public string profile;
        public int expected;
        public int arrived;
        public SidecarTicket[] tickets;
        public string result_delivery;
    }

    /// <summary>One call in flight. In a coroutine: <c>yield return call;</c> then read
    /// <c>call.Response</c>. In async code: <c>var response = await call;</c>.</summary>
    public sealed class SidecarCall : CustomYieldInstruction
    {
        private readonly Task<SidecarResponse> _task;

        internal SidecarCall(Task<SidecarResponse> task) { _task = task; }

        public Task<SidecarResponse> Task { get { return _task; } }
        public bool IsDone { get { return _task.IsCompleted; } }
        /// <summary>The answer once done; null before.</summary>
        public SidecarResponse Response { get { return _task.IsCompleted ? _task.Result : null; } }
        public override bool keepWaiting { get { return !_task.IsCompleted; } }
        public TaskAwaiter<SidecarResponse> GetAwaiter() { return _task.GetAwaiter(); }
    }
}
