"""Core figures of the sidecar, in one run (about a minute), printed as a markdown table.

1. Local API throughput and latency: `POST /v1/health` and `GET /v1/status` at 16 connections,
   for `sidecar serve` and for a bare aiohttp app answering the same bodies
   (`benchmarks/bare_app.py`), so the ratio sidecar / bare is what our own code costs. Load comes
   from wrk (`apt-get install wrk`) or, without it, from an aiohttp load generator in its own
   process; server and load generator are pinned to different cores when `taskset` exists.
2. Memory: RSS after a realistic session (ready, match, players in and out, heartbeats, status,
   metrics: a few hundred calls), RSS right after the load test next to the bare aiohttp app's,
   and reference processes showing where the memory goes (aiohttp.web, psutil, pydantic-core,
   pydantic). CPU time of an idle sidecar over 30 s. The same session in the same run for the
   sidecar with match data (a 5v5, 10 tickets) and after traffic with 4xx answers (the access
   log at its default level), each with its own idle window.
3. Start-up: process spawn → `/healthz` answers (median of 10), with an import profile
   (`python -X importtime`) of `serve` showing what dominates.
4. Stop latency: a decided stop (`POST /v1/shutdown {"grace_seconds": 0}`) → the self-stop
   `DELETE` received by the platform (the in-process emulator, which records its arrival),
   with a fresh sidecar per sample.

Every server is a child process on loopback (ephemeral ports) and is always terminated; every
wait is bounded. Usage: ``scripts/bench [--quick] [--json PATH]`` (see ``--help``).

Modules, one job each:

    harness.py     starting, reaching and ending child processes (the bench's environment)
    throughput.py  measurement 1, with loadgen.py (the load generator when wrk is missing)
    memory.py      measurement 2: the session, the reference processes, the idle probe
    variants.py    measurement 2: the three sidecars (plain, match data, 4xx traffic)
    startup.py     measurement 3
    stop.py        measurement 4
    report.py      the typed results, the markdown report and the JSON of --json
    main.py        the options and the order of the run
"""
