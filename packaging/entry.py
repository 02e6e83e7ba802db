"""PyInstaller entry point of the standalone build: the same `main()` as `edgegap-sidecar`.

PyInstaller needs a script, not a console-scripts entry point; this is that script and nothing
more, so the standalone build and the pip-installed command cannot drift apart.
"""

from sidecar.cli import main

raise SystemExit(main())
