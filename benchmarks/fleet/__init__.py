"""Fleet simulation: N real sidecars in run mode, each playing one failure mode, against one
emulator that injects platform faults. Does every deployment stop once, on time, with its logs?

Each deployment is a real emulator deployment backed by a local process,
`python -m sidecar run -- python benchmarks/games/fleet_game.py`, started by the emulator with
its own `ARBITRIUM_DELETE_URL`/token (so the emulator's request log tells every deployment's
DELETEs apart) and its own local API port (`SIDECAR_PORT=0`: the kernel picks a free one at
bind time, and the game learns it from `SIDECAR_URL`). The emulator stores the process's stdout
and stderr as its container logs, keeps them when the stop asks for log storage, and SIGTERMs
the process once the stop is accepted, as the platform does. The restart policy is `always`,
the platform default: a sidecar that exits without stopping its deployment shows up as a
restart. Everything runs on loopback; the run ends by itself (`--timeout` bounds the wait).

Failure modes, round-robin over the fleet. "Stop due" is computed from the game's own record
of the event the sidecar's timer runs from, each time taken *before* the call that starts the
timer (so a due time is never later than the sidecar's own, and lateness is never
under-reported); see scenarios.MODES for the rule of each.

Platform conditions, one per deployment (rotating so that every mode meets every condition),
each a fault scoped to that deployment's self-stop and timed so that its stop falls inside it:
an outage (503, no Retry-After) of `--outage` seconds, 429 storms of `--storm` seconds with
`Retry-After: 0` (the floor of SPEC §11) and `Retry-After: 1`, slow answers (every call held
`--slow` seconds, then processed) for `--storm` seconds, an outage answering `Retry-After: 2`,
or nothing. On top, one fleet-wide outage of `--outage` seconds hits every
deployment whose stop falls in it, all retrying at once.

Per deployment: the due time; when the platform accepted the stop (the first real 2xx in the
request log); every DELETE; the time the platform made it lose (the refusing windows that
apply to it and the Retry-After waits it asked for, inside [due, accepted], plus the time the
accepting call was held); whether its
stored logs hold the `sidecar.stop` record (exactly once, on a line of its own, with the
expected reason, no game output after it but the game's answer to SIGTERM). Exit 1 when a
target is missed.

Usage: ``scripts/fleet-sim [--quick] [--count 100] [--rate 1.5] [--outage 10] [--json PATH]
[--doc docs/reliability.md]``.

`scripts/fleet-sim matches` runs the match simulation instead (`benchmarks/fleet/matches/`):
matchmaker deployments with no-shows and a result receiver with outages.

Modules, one job each:

    scenarios.py   the failure modes, their stop reasons and due-time rules, the fleet's settings
    faults.py      the platform fault model: per-deployment conditions, fleet-wide outage, windows
    runner.py      the run against the emulator, and the machine-load sampler
    accounting.py  per-deployment figures, per-group summaries and findings (pure)
    report.py      the markdown report
    main.py        the options and the order of the run
    matches/       the match simulation (its own scenarios, run, accounting and report)
"""
