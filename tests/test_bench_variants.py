"""The same-run memory rows of `scripts/bench` (benchmarks/core/variants.py) against real
sidecars: each configuration's session gets the answers it expects (the match's tickets found
and arrived, the 4xx it sends refused as planned), and every row is filled."""

from __future__ import annotations

import json
import urllib.request

from benchmarks.core import variants
from benchmarks.core.harness import Children, Client, free_port, running, wait_http_ok


def test_the_three_sidecars_play_their_sessions_and_are_measured() -> None:
    with variants.measured(Children(), seconds=0.1, copies=1) as figures:
        rows = figures()
    assert [row.label.split(" ")[0] for row in rows] == ["plain", "with", "access"]
    plain, match, noisy = rows
    assert plain.calls >= 230
    assert match.calls == plain.calls + 22  # the match read twice, 10 tickets looked up and used
    assert (noisy.calls, noisy.errors_4xx) == (plain.calls + 40, 40)
    for row in rows:
        assert 10 < row.uss_mb < row.rss_mb
        assert row.idle.cpu_s is not None


def test_the_match_variant_is_a_5v5_whose_tickets_all_arrive() -> None:
    env, tickets = variants.match_env()
    assert len(tickets) == 10
    assert sorted(len(groups) for groups in json.loads(env["MM_TEAMS"]).values()) == [5, 5]
    port = free_port()
    with running(Children().spawn_sidecar(port, env)) as proc:
        wait_http_ok(port, proc)
        client = Client(port)
        variants.match_session(tickets)(client)
        client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/match", timeout=5) as answer:
            match = json.load(answer)
    assert (match["expected"], match["arrived"]) == (10, 10)
