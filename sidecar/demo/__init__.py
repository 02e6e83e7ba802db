"""`edgegap-sidecar demo`: the whole Edgegap lifecycle on one machine, with no account.

The scenario, in order; a failure names the step it happened in:

    1. start the emulator in-process on a free loopback port, with application `demo-game`
       backed by `python -m sidecar run -- python <example game server>`;
    2. deploy it through the emulator's HTTP API (`POST /deployments`), wait for Status.READY;
    3. follow the sidecar inside the deployment through its event stream (`GET /v1/events`);
    4. play a match with the example's UDP bots against the game port: the game ends the match,
       the sidecar drains, self-stops with `container_log_storage=true`, and the emulator walks
       the deployment to Status.TERMINATED;
    5. read the stored container logs and print their tail, from the `sidecar.stop` record on;
    6. with `--keep`, leave the emulator up until Ctrl-C, to look at it on its dashboard (its
       URL, `/_emulator/ui#token=…`, is printed at step 1).

With `--agones` the game is one that knows only Agones (over REST, or over gRPC on Agones' Node.js
SDK with `--grpc`; example.py), and its Shutdown() is the stop.

With `--match` it plays two matchmaker matches instead (`POST /_emulator/matches`, one ticket
per player, `SIDECAR_MATCH_QUORUM=all`, `SIDECAR_RESULT_URL` at the emulator's result sink):
in the first every player reports its ticket and the bots play it to its end, in the second
the last player never shows up and the sidecar stops it for `no_show`; after each, the demo
reads the result the sidecar delivered to the sink (exactly one, with its `Idempotency-Key`).
See matches.py.

The timeline is printed as it happens, stamped relative to the start. Everything listens on
127.0.0.1, on ports picked at run time, so the demo runs beside anything already listening.

Modules, one responsibility each:

    options.py   DemoOptions and the `demo` flags
    example.py   the example game: where it is, its command, the sidecar settings it runs with
    scenario.py  Demo: the walk from deploy to Status.TERMINATED, its waits and its failures
    matches.py   demo --match: its two matches, the arrivals, the result read from the sink
    bots.py      the example's UDP bots in a thread, their joins and leaves on the timeline
    reading.py   what it reads back: the event stream, the self-stop call, the stored logs
    timeline.py  the timeline printer and the one-line descriptions of what happened
    command.py   main(): options in, exit code out
"""

from sidecar.demo.command import main
from sidecar.demo.options import DemoOptions, add_arguments, options_from_args
from sidecar.demo.scenario import Demo, DemoSummary
from sidecar.errors import DemoError

__all__ = [
    "Demo",
    "DemoError",
    "DemoOptions",
    "DemoSummary",
    "add_arguments",
    "main",
    "options_from_args",
]
