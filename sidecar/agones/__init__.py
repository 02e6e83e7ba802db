"""The Agones SDK compatibility facade (SPEC §10, §10.1): a second API adapter over the
lifecycle, over REST and gRPC.

    proto_json.py  proto-JSON as Agones' gateway speaks it: int64 as strings, request fields,
                   `{"code", "message", "details"}` errors, the client-streamed health body
    metadata.py    the Kubernetes rules for labels and annotations
    manifest.py    SIDECAR_AGONES_GAMESERVER: the GameServer file an Agones user already has
    state.py       lifecycle state (+ hold, stop reason) -> Agones GameServer state
    counters.py    counters and lists with Agones' rules (pure)
    gameserver.py  the GameServer object: what the facade owns plus a view of the lifecycle,
                   bounded at 1 MiB, rendered once per change
    sdk.py         the transport-independent core: the SDK's calls and the watch fan-out
    watch.py       REST's GET /watch/gameserver: NDJSON and WebSocket framing of the core's watch
    app.py         the REST transport: aiohttp routes over sdk.py, start and close
    grpc_wire.py   the proto3 binary format of the SDK's gRPC messages, by hand (proto/: the
                   Agones .proto files the descriptions were written from)
    grpc_server.py the gRPC transport (SPEC §10.1): grpclib services over sdk.py, start and close

Only `manifest` is imported outside a running facade (config.py parses the variable with it),
so this file imports nothing.
"""
