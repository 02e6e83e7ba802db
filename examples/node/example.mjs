// Walk one match through the edgegap-sidecar local API from Node 20, with no dependencies:
// ready, heartbeats, a match with two players, match end, and the sidecar's state events up to
// the stop. Run it beside a sidecar:
//
//   SIDECAR_PORT=8787 node examples/node/example.mjs
//
// Exits 0 once the sidecar reports the stop under way, 1 on any error.

import { SidecarClient } from "./sidecar-client.mjs";

const STOP_STATES = new Set(["draining", "stopping", "stopped"]);

function log(message) {
  console.log(`[node-game] ${message}`);
}

function withTimeout(promise, ms, message) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

async function main() {
  const sidecar = new SidecarClient();
  log(`sidecar at ${sidecar.baseUrl}`);

  // Listen before acting so no state change is missed; the promise settles on the first stop state.
  const listening = new AbortController();
  const stopSeen = (async () => {
    for await (const { event, data } of sidecar.events({ signal: listening.signal })) {
      if (event !== "state") continue;
      log(`event: state=${data.state} stop_reason=${data.stop_reason}`);
      if (STOP_STATES.has(data.state)) return data;
    }
    throw new Error("event stream ended before the stop");
  })();
  // Mark it handled now: if the stream fails while we are busy elsewhere, the await below
  // still sees the error, but Node does not abort on an "unhandled" rejection first.
  stopSeen.catch(() => {});

  const deployment = await sidecar.deployment();
  log(`deployment: request_id=${deployment.request_id ?? "-"}`);
  await sidecar.ready();
  log("ready");
  const heartbeat = sidecar.startHeartbeat(1000);
  try {
    await sidecar.matchStart("node-demo");
    log(`alice joined, ${await sidecar.connect("alice")} online`);
    log(`bob joined, ${await sidecar.connect("bob")} online`);
    const roster = await sidecar.players();
    log(`roster: ${roster.ids.join(", ")}`);
    log(`alice left, ${await sidecar.disconnect("alice")} online`);
    log(`bob left, ${await sidecar.disconnect("bob")} online`);
    await sidecar.matchEnd({ result: { winner: "bob", scores: { alice: 3, bob: 5 } } });
    log("match end reported");

    const stopped = await withTimeout(stopSeen, 10000, "no stop event within 10 s");
    log(`sidecar is ${stopped.state} (${stopped.stop_reason})`);
  } finally {
    heartbeat.stop();
    listening.abort();
    await stopSeen.catch(() => {});
  }
}

main().catch((error) => {
  console.error(`[node-game] error: ${error.message}`);
  process.exitCode = 1;
});
