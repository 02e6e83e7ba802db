// Sample for com.edgegap.sidecar (Package Manager > Edgegap Sidecar > Samples > Import).
// Put it on any GameObject of your first server scene; it may be destroyed by the next scene
// load, the sidecar object is not (it lives under DontDestroyOnLoad). Wire OnPlayerJoined /
// OnPlayerLeft / OnMatchDecided to your transport and game rules.

using System.Collections;
using Edgegap.Sidecar;
using UnityEngine;
using UnityEngine.SceneManagement;

public class ServerBootstrap : MonoBehaviour
{
    [Tooltip("Scene to load once the server has reported ready")]
    public string mapScene = "Map";

    [Tooltip("Require a matchmaker ticket from every joiner (checked with the sidecar)")]
    public bool checkTickets = true;

    private IEnumerator Start()
    {
        if (!EdgegapSidecar.IsActive) yield break; // a client or the editor: nothing to report
        var sidecar = EdgegapSidecar.Instance;
        sidecar.Draining += status =>
            Debug.Log("[game] server closing (" + status.stop_reason + "): telling players goodbye");
        sidecar.Stopping += status => Debug.Log("[game] deployment stopping");

        // ... open the game port here, then:
        var ready = sidecar.Ready(); // retries while the sidecar starts, then heartbeats
        yield return ready;
        if (!ready.Response.Ok) Debug.LogWarning("[game] sidecar not ready: " + ready.Response);
        SceneManager.LoadScene(mapScene); // the heartbeat survives this
    }

    // From your transport's connect callback. With a matchmaker, the joiner sends its ticket id.
    public async void OnPlayerJoined(string playerId, string ticketId)
    {
        var sidecar = EdgegapSidecar.Instance;
        if (checkTickets && !string.IsNullOrEmpty(ticketId))
        {
            var ticket = await sidecar.GetTicket(ticketId);
            if (ticket.Code == 404)
            {
                Debug.Log("[game] " + playerId + " has no ticket in this match: kick");
                return;
            }
        }
        await sidecar.PlayerConnected(playerId, ticketId);
    }

    public void OnPlayerLeft(string playerId)
    {
        EdgegapSidecar.Instance.PlayerDisconnected(playerId);
    }

    [System.Serializable]
    private class Result { public string winner; }

    public void OnMatchDecided(string winner)
    {
        EdgegapSidecar.Instance.MatchEnd(JsonUtility.ToJson(new Result { winner = winner }), graceSeconds: 10f);
    }
}
