"""edgegap-sidecar: stops an Edgegap deployment exactly once, for the right reason, with logs."""

__version__ = "0.1.0"
