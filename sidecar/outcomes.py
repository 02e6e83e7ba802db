"""How the two calls a stop makes ended: the self-stop (`StopOutcome`) and the match-result
delivery (`DeliveryOutcome`). Each enum is the one spelling its values have: the platform client
returns it, status, metrics and the stop record show it, and the OpenAPI document derives its
schema from it.

Dependency-free on purpose: `sidecar.edgegap` (which may import only the redaction and retry
modules) and `sidecar.status` both need these, and neither may import the other; the response
shapes (`sidecar.responses`) use them without importing status.
"""

from __future__ import annotations

from enum import StrEnum


class StopOutcome(StrEnum):
    """How the self-stop ended."""

    ACCEPTED = "accepted"  # the platform took it (2xx)
    ALREADY_GONE = "already_gone"  # 404 / 410: as good as accepted
    FAILED = "failed"  # failed for good; SIDECAR_ON_STOP_FAILURE applied
    # Only logged: no delete URL or token, or SIDECAR_DRY_RUN. The platform client never returns
    # it: it is only called when there is a platform to call.
    DRY_RUN = "dry_run"


class DeliveryOutcome(StrEnum):
    """Where the match-result delivery stands."""

    OFF = "off"  # no SIDECAR_RESULT_URL
    PENDING = "pending"  # started (or about to be), not finished yet
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # a permanent answer, or the budget spent
