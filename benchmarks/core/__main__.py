"""`python -m benchmarks.core` (what `scripts/bench` runs)."""

import sys

# Before anything imports sidecar: the bench never writes bytecode into the work tree (its
# children do not either), so the cold start-up row finds sidecar/__pycache__ only if the
# developer made one.
sys.dont_write_bytecode = True

from benchmarks.core.main import main  # noqa: E402

raise SystemExit(main())
