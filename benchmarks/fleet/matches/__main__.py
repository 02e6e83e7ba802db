"""`python -m benchmarks.fleet.matches` (what `scripts/fleet-sim matches` runs)."""

from benchmarks.fleet.matches.main import main

raise SystemExit(main())
