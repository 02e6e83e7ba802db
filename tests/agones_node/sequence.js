// The whole Agones SDK call sequence through the published Node SDK (@google-cloud/agones-sdk),
// against the sidecar on AGONES_SDK_GRPC_PORT. Prints one JSON line per step ({"step", ...});
// tests/test_agones_grpc_node.py checks them and the state the REST side shows. Exit 0 when
// every call answered as Agones' SDK server would, 1 otherwise.
'use strict';
const AgonesSDK = require('@google-cloud/agones-sdk');

const out = (step, data) => console.log(JSON.stringify({step, ...data}));

async function expectError(step, call) {
	try {
		await call();
	} catch (error) {
		out(step, {code: error.code, details: error.details});
		return;
	}
	throw new Error(`${step}: expected an error`);
}

async function main() {
	const sdk = new AgonesSDK();
	await sdk.connect();
	out('connect', {});

	const watched = [];
	let firstWatch;
	const first = new Promise((resolve) => { firstWatch = resolve; });
	sdk.watchGameServer((gameServer) => {
		watched.push(gameServer.status.state);
		firstWatch(gameServer);
	}, (error) => out('watch-error', {code: error.code}));
	const current = await first;
	out('watch-first', {name: current.objectMeta.name, state: current.status.state});

	sdk.health();
	sdk.health();
	sdk.health((error) => out('health-error', {message: String(error)}));
	out('health', {});

	await sdk.ready();
	out('ready', {});
	await sdk.reserve(0);
	out('reserve', {state: (await sdk.getGameServer()).status.state});
	await sdk.allocate();
	const gs = await sdk.getGameServer();
	out('allocate', {state: gs.status.state, uid: gs.objectMeta.uid,
		creation: gs.objectMeta.creationTimestamp});

	await sdk.setLabel('creationTimestamp', String(gs.objectMeta.creationTimestamp));
	await sdk.setAnnotation('UID', gs.objectMeta.uid);
	const labelled = await sdk.getGameServer();
	out('metadata', {labels: labelled.objectMeta.labelsMap,
		annotations: labelled.objectMeta.annotationsMap});

	// alpha: player tracking
	await sdk.alpha.setPlayerCapacity(10);
	const capacity = await sdk.alpha.getPlayerCapacity();
	const connected = await sdk.alpha.playerConnect('1234');
	const again = await sdk.alpha.playerConnect('1234');
	const isConnected = await sdk.alpha.isPlayerConnected('1234');
	const players = await sdk.alpha.getConnectedPlayers();
	const countWith = await sdk.alpha.getPlayerCount();
	out('players', {capacity, connected, again, isConnected, players, countWith});
	await sdk.alpha.playerConnect('5678');
	const disconnected = await sdk.alpha.playerDisconnect('1234');
	out('players-after', {disconnected, count: await sdk.alpha.getPlayerCount()});

	// beta: counters and lists (the local-mode GameServer: rooms {1, 10}, players list)
	const rooms = [await sdk.beta.getCounterCount('rooms'), await sdk.beta.getCounterCapacity('rooms')];
	await sdk.beta.setCounterCapacity('rooms', 42);
	await sdk.beta.incrementCounter('rooms', 5);
	await sdk.beta.decrementCounter('rooms', 2);
	await sdk.beta.setCounterCount('rooms', 40);
	out('counters', {before: rooms, count: await sdk.beta.getCounterCount('rooms'),
		capacity: await sdk.beta.getCounterCapacity('rooms')});
	await expectError('counter-refused', () => sdk.beta.incrementCounter('rooms', 3));
	await expectError('counter-missing', () => sdk.beta.getCounterCount('nope'));

	await sdk.beta.appendListValue('maps', 'dust');
	await sdk.beta.appendListValue('maps', 'nuke');
	const contains = await sdk.beta.listContains('maps', 'dust');
	await sdk.beta.deleteListValue('maps', 'dust');
	await sdk.beta.setListCapacity('maps', 5);
	out('lists', {contains, values: await sdk.beta.getListValues('maps'),
		length: await sdk.beta.getListLength('maps'),
		capacity: await sdk.beta.getListCapacity('maps'),
		players: await sdk.beta.getListValues('players')});
	await expectError('list-refused', () => sdk.beta.appendListValue('maps', 'nuke'));

	await sdk.shutdown();
	const shut = await sdk.getGameServer();
	// The watch shows the Shutdown too, and stays open (Agones' clients break if it closes).
	for (let i = 0; i < 100 && watched[watched.length - 1] !== 'Shutdown'; i++) {
		await new Promise((resolve) => setTimeout(resolve, 20));
	}
	sdk.health();
	out('shutdown', {state: shut.status.state, watched});
	sdk.close();
}

main().then(() => process.exit(0), (error) => {
	out('failed', {message: String(error && error.stack || error)});
	process.exit(1);
});
