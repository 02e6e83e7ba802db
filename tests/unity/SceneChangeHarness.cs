// Plays a lobby -> map scene change with the com.edgegap.sidecar package on the stand-in engine
// (UnityEngineStandIns.cs) against a real sidecar, then every route and the event stream.
// Built with mcs and run with mono by tests/test_unity_package.py, which reads the
// "key value" lines this prints. Usage: mono harness.exe SECONDS_AFTER_SCENE_CHANGE [scene-only | client]

using System;
using System.Globalization;
using System.Threading.Tasks;
using Edgegap.Sidecar;
using StandIn;
using UnityEngine;
using UnityEngine.SceneManagement;

public class LobbyGame : MonoBehaviour
{
    public static SidecarCall ReadyCall;
    public static bool Destroyed;

    private void Start()
    {
        var sidecar = EdgegapSidecar.Instance;
        sidecar.heartbeatInterval = 0.2f;
        ReadyCall = sidecar.Ready();
    }

    private void OnDestroy() { Destroyed = true; }
}

public static class Program
{
    private static void Say(string key, object value)
    {
        Console.WriteLine(key + " " + value);
    }

    private static async Task Routes(EdgegapSidecar sidecar)
    {
        Say("route connect", (await sidecar.PlayerConnected("p1")).Code);
        Say("route connect_ticket", (await sidecar.PlayerConnected("p2", "no-such-ticket")).ErrorCode);
        Say("route disconnect", (await sidecar.PlayerDisconnected("p2")).Code);
        Say("route set_players", (await sidecar.SetPlayers(new[] { "p1", "p3" })).Code);
        var players = await sidecar.GetPlayers();
        Say("route players", JsonUtility.FromJson<SidecarPlayers>(players.Body).count);
        Say("route set_count", (await sidecar.SetPlayerCount(2)).Code);
        Say("route hold", (await sidecar.Hold(0f)).Code);
        Say("route activity", (await sidecar.Activity()).Code);
        Say("route health", (await sidecar.Health()).Code);
        Say("route match_start", (await sidecar.MatchStart("m-1")).Code);
        Say("route deployment", (await sidecar.GetDeployment()).Code);
        Say("route match", (await sidecar.GetMatch()).Code);
        Say("route ticket", (await sidecar.GetTicket("no-such-ticket")).Code);
        var status = await sidecar.GetStatus();
        Say("route status", JsonUtility.FromJson<SidecarStatus>(status.Body).state);
        Say("route match_end", (await sidecar.MatchEnd("{\"winner\":\"p1\"}", 1f)).Code);
        Say("route shutdown", (await sidecar.Shutdown("after the match")).Code);
    }

    // A client build (not batch mode, not UNITY_SERVER): nothing is created, nothing is sent.
    private static int Client()
    {
        Engine.Boot(batchMode: false, editor: false);
        Engine.RunInitializers(RuntimeInitializeLoadType.SubsystemRegistration);
        SceneManager.LoadScene("Menu");
        Engine.Tick();
        Engine.RunInitializers(RuntimeInitializeLoadType.AfterSceneLoad);
        Say("active", EdgegapSidecar.IsActive);
        Say("auto_created", UnityEngine.Object.FindObjectsOfType<EdgegapSidecar>().Length);
        var ready = EdgegapSidecar.Instance.Ready();
        Engine.RunFor(2, () => ready.IsDone);
        Say("ready_skipped", ready.IsDone && ready.Response.Skipped);
        Engine.RunFor(1);
        Say("health_loop", EdgegapSidecar.Instance.HealthLoopRunning);
        return 0;
    }

    public static int Main(string[] args)
    {
        double after = double.Parse(args[0], CultureInfo.InvariantCulture);
        if (args.Length > 1 && args[1] == "client") return Client();
        Engine.Boot(batchMode: true, editor: false);
        Engine.RunInitializers(RuntimeInitializeLoadType.SubsystemRegistration);
        Engine.Scenes["Lobby"] = () => new GameObject("Lobby").AddComponent<LobbyGame>();
        // The map scene has its own copy of the component, as a designer might leave it.
        Engine.Scenes["Map"] = () => new GameObject("SidecarInMap").AddComponent<EdgegapSidecar>();

        SceneManager.LoadScene("Lobby");
        Engine.Tick();
        Engine.RunInitializers(RuntimeInitializeLoadType.AfterSceneLoad);
        var sidecar = EdgegapSidecar.Instance;
        Say("active", EdgegapSidecar.IsActive);

        bool draining = false, stopping = false;
        sidecar.StateChanged += (state, status) => Say("event state", status.state);
        sidecar.Draining += status => { draining = true; Say("event draining", status.stop_reason); };
        sidecar.Stopping += status => { stopping = true; Say("event stopping", status.state); };

        Engine.RunFor(15, () => LobbyGame.ReadyCall != null && LobbyGame.ReadyCall.IsDone);
        Say("ready", LobbyGame.ReadyCall != null && LobbyGame.ReadyCall.IsDone ? LobbyGame.ReadyCall.Response.Code : -1);

        SceneManager.LoadScene("Map");
        Engine.RunFor(0.2);
        Say("lobby_destroyed", LobbyGame.Destroyed);
        Say("same_instance", ReferenceEquals(EdgegapSidecar.Instance, sidecar) && sidecar);
        Say("map_copy_removed", UnityEngine.Object.FindObjectsOfType<EdgegapSidecar>().Length == 1);
        Say("health_loop", sidecar && sidecar.HealthLoopRunning);

        Engine.RunFor(after);
        var current = EdgegapSidecar.Instance;
        var status0 = current.GetStatus();
        Engine.RunFor(5, () => status0.IsDone);
        Say("state_after_scene_change", JsonUtility.FromJson<SidecarStatus>(status0.Response.Body).state);

        if (args.Length > 1 && args[1] == "scene-only") return 0;

        var flow = Routes(current);
        Engine.RunFor(30, () => flow.IsCompleted);
        if (flow.IsFaulted) Say("routes_failed", flow.Exception.InnerException);
        Engine.RunFor(15, () => draining && stopping);
        if (draining) Say("goodbye", "players told");
        return 0;
    }
}
