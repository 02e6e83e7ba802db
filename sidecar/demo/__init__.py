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

With `--match` the deployment is a matchmaker match instead (`POST /_emulator/matches`, one
ticket per player, `SIDECAR_MATCH_QUORUM=all`, a short `SIDECAR_NO_SHOW_TIMEOUT`): every player
but one reports its ticket through `POST /v1/players/connect`, the last never shows up, and the
sidecar stops the deployment for `no_show` (steps 4-5 with that reason).

The timeline is printed as it happens, stamped relative to the start. Everything listens on
127.0.0.1, on ports picked at run time, so the demo runs beside anything already listening.

Modules, one responsibility each:

    options.py   DemoOptions and the `demo` flags
    example.py   the example game: where it is, its command, the sidecar settings it runs with
    scenario.py  Demo: the walk from deploy to Status.TERMINATED, its waits and its failures
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
