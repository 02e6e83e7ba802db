"""`python -m sidecar` runs the same command line as `edgegap-sidecar`."""

import sys

from sidecar.signal_relay import hold_startup_signals_for

# Before the command line's imports: from here on no signal ends `run` or `serve` silently.
hold_startup_signals_for(sys.argv[1:])

from sidecar.cli import main  # noqa: E402

raise SystemExit(main())
