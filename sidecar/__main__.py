"""`python -m sidecar` runs the same command line as `edgegap-sidecar`."""

from sidecar.cli import main

raise SystemExit(main())
