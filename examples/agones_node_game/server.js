// A small UDP game server integrated with Agones only, through Agones' published Node.js SDK
// (@google-cloud/agones-sdk, gRPC). It knows nothing of Edgegap or the sidecar: under
// `SIDECAR_AGONES=true edgegap-sidecar run -- node server.js` it runs unchanged, and the sidecar
// turns its Agones calls into Edgegap's lifecycle (one self-stop for its Shutdown()).
//
// The SDK finds the SDK server on AGONES_SDK_GRPC_PORT (default 9357), which run mode sets.
//
//   connect      sdk.connect()                     waits until the SDK server answers
//   watch        sdk.watchGameServer(...)          logs each state the GameServer goes through
//   Ready()      sdk.ready()                       once the UDP socket is bound
//   Health()     sdk.health()                      every --health-interval seconds (one stream)
//   players      sdk.alpha.playerConnect/Disconnect on JOIN / LEAVE
//   label        sdk.setLabel('winner', ...)       the match's result, at its end
//   Shutdown()   sdk.shutdown()                    when the match is over
//
// Protocol (the same as examples/python_game and examples/agones_game, so their bots can play):
// one UTF-8 text datagram per command, one reply per command.
//
//   JOIN <player>            -> OK JOIN <player> players=<online>
//   SCORE <player> <total>   -> OK SCORE <player> <total>
//   LEAVE <player>           -> OK LEAVE <player> players=<online>
//   PING                     -> OK PING - players=<online>
//   anything refused         -> ERR <COMMAND> <player or -> <reason>
//
// The match is over when a player reaches --target-score (0 = no target) or when every player
// has left after at least one score. The server keeps answering until SIGTERM/SIGINT, then
// exits 0.
'use strict';
const dgram = require('dgram');
const AgonesSDK = require('@google-cloud/agones-sdk');

function option(name, fallback) {
	const at = process.argv.indexOf(`--${name}`);
	return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

const host = option('host', '0.0.0.0');
const port = Number(option('port', process.env.GAME_PORT || '7777'));
const healthInterval = Number(option('health-interval', '2')) * 1000;
const targetScore = Number(option('target-score', '0'));
const log = (message) => console.log(`[agones-node-game] ${message}`);

const online = new Set();
const scores = new Map();
let over = false;
let shutdownSent = false;

async function finish(sdk) {
	if (over) {
		return;
	}
	over = true;
	const best = Math.max(0, ...scores.values());
	const leaders = [...scores].filter(([, score]) => score === best).map(([player]) => player);
	const winner = best > 0 && leaders.length === 1 ? leaders[0] : 'none';
	log(`match over: winner ${winner}`);
	try {
		await sdk.setLabel('winner', winner);
		await sdk.shutdown();
		shutdownSent = true;
		log('told Agones to shut down');
	} catch (error) {
		log(`Agones refused the end of the match: ${error.details || error}`);
	}
}

async function handle(sdk, text) {
	const words = text.trim().split(/\s+/);
	const command = (words[0] || '?').toUpperCase();
	const player = words[1] || '-';
	if (command === 'PING') {
		return `OK PING - players=${online.size}`;
	}
	if (player === '-' || !['JOIN', 'SCORE', 'LEAVE'].includes(command)) {
		return `ERR ${command} ${player} unknown command`;
	}
	if (over) {
		return `ERR ${command} ${player} the match is over`;
	}
	try {
		if (command === 'JOIN') {
			await sdk.alpha.playerConnect(player);
			online.add(player);
			if (!scores.has(player)) {
				scores.set(player, 0);
			}
			return `OK JOIN ${player} players=${online.size}`;
		}
		if (!online.has(player)) {
			return `ERR ${command} ${player} not in the match`;
		}
		if (command === 'SCORE') {
			const total = Number(words[2]);
			if (!Number.isInteger(total) || total < 0) {
				return `ERR SCORE ${player} the total must be a whole number`;
			}
			scores.set(player, Math.max(scores.get(player), total));
			const reply = `OK SCORE ${player} ${scores.get(player)}`;
			if (targetScore && scores.get(player) >= targetScore) {
				await finish(sdk);
			}
			return reply;
		}
		await sdk.alpha.playerDisconnect(player);
		online.delete(player);
		const reply = `OK LEAVE ${player} players=${online.size}`;
		if (online.size === 0 && [...scores.values()].some((score) => score > 0)) {
			await finish(sdk);
		}
		return reply;
	} catch (error) {
		// A call Agones refuses (players at capacity...) is status 2 with Agones' message.
		return `ERR ${command} ${player} ${error.details || error}`;
	}
}

async function main() {
	const sdk = new AgonesSDK();
	await sdk.connect();
	const first = await sdk.getGameServer();
	log(`connected to Agones: GameServer ${first.objectMeta.name}`);
	sdk.watchGameServer((gameServer) => log(`GameServer is ${gameServer.status.state}`),
		(error) => log(`watch failed: ${error.details || error}`));

	const socket = dgram.createSocket('udp4');
	socket.on('message', async (data, remote) => {
		const reply = await handle(sdk, data.toString('utf8'));
		socket.send(reply, remote.port, remote.address);
	});
	await new Promise((resolve) => socket.bind(port, host, resolve));
	log(`listening on udp ${host}:${socket.address().port}`);
	await sdk.ready();
	sdk.health();
	const pings = setInterval(() => sdk.health((error) => log(`health failed: ${error}`)),
		healthInterval);

	const stop = (signal) => {
		log(`${signal}: exiting (shutdown ${shutdownSent ? 'was' : 'was not'} sent)`);
		clearInterval(pings);
		socket.close();
		sdk.close();
		process.exit(0);
	};
	process.on('SIGTERM', () => stop('SIGTERM'));
	process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error) => {
	log(`cannot start: ${error.details || error}`);
	process.exit(1);
});
