"""Fleet simulation of matches: matchmaker deployments (the `MM_*` variables of real tickets,
made by the emulator's `POST /_emulator/matches`), some of whose players never come, each a real
`sidecar run` with `benchmarks/games/match_game.py`, delivering its result to the emulator's
result sink while that sink has outages. How much billing does a match that cannot be played
cost with the no-show rule and without it, and what becomes of the results?

Every match has 2 teams of 2 tickets; round-robin it is played in full, with one player
missing, with one team missing, or with nobody, and each of these under two sidecar
configurations: the no-show rule on (`SIDECAR_NO_SHOW_TIMEOUT`, quorum `teams`), or off and the
first-player and empty timers left to catch it. Timers run scaled (`--scale`, 0.1: 60 s are
6 s) so that a fleet fits in minutes. The result sink is taken down fleet-wide twice: a long
outage (longer than the grace plus `SIDECAR_RESULT_WAIT`, so the sidecars stop before it is
back and their results are lost, kept only in the stop record) and a short one.

Usage: ``scripts/fleet-sim matches [--quick] [--count 160] [--rate 1.5] [--scale 0.1]
[--sink-outage 8] [--sink-blip 1] [--json PATH] [--doc docs/reliability.md]``.

Modules, one job each:

    scenarios.py   the matches, who comes, the two configurations, due and unplayable times
    runner.py      the run against the emulator and its result sink, the outages
    accounting.py  per-match figures, per-group summaries and findings (pure)
    report.py      the markdown report
    main.py        the options and the order of the run
"""
