"""`python -m benchmarks.fleet` (what `scripts/fleet-sim` runs)."""

from benchmarks.fleet.main import main

raise SystemExit(main())
