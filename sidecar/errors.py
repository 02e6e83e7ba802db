"""The sidecar's exception hierarchy, in one place.

    SidecarError                 base of everything we raise on purpose
    ├── ConfigError              a setting is invalid: the CLI prints it and exits 2
    ├── UsageError               a command-line flag or argument is invalid: exit 2
    ├── StartupError             cannot start (port in use, ...): exit 3
    │   └── http_server.UnsupportedAiohttp  an aiohttp without the private hooks we use
    ├── GameStartError           the game command cannot be started: the run ends 127 / 126
    ├── DemoError                a step of `edgegap-sidecar demo` failed: exit 1
    ├── emulator.harness.EmulatorError  the in-process emulator answered unexpectedly
    └── HttpError                a request is answered with an error status
        ├── api_wire.ApiError             ... in the local API's `{"error": {...}}` envelope
        ├── agones.proto_json.AgonesError ... in Agones' `{"code", "message", "details"}` shape
        ├── emulator.errors.PlatformError ... in the platform's `{"message"}` shape
        └── emulator.fleets.FleetError    ... a fleet or policy the store refuses

Outside it on purpose:

* `lifecycle.TransitionRefused`, `lifecycle.RosterFull`, `lifecycle.UnknownTicket`: the pure
  core imports nothing of ours; each adapter answers them in its own shape (409, 422);
* `agones.counters.Refused`: the pure counter and list rules' refusal, answered by the facade;
* `events.TooManySubscribers`: the hub's own refusal, turned into a 429 by the API;
* `outbound.SessionClosed` (a RuntimeError): a platform client asking for the session after
  shutdown began; its caller's isolation boundary turns it into a failed attempt;
* `agones.grpc_wire.DecodeError` and the modules' private ValueErrors (`_NotJson`, ...): parse
  failures that never leave the module that raises them as themselves;
* `client.SidecarClientError` with its subclasses: client.py is one stdlib-only file that games
  copy.

Who catches what: `cli.main` is the last-resort guard. It turns a SidecarError into its one-line
message and exit code, and any other Exception (a bug) into a redacted traceback on stderr and
exit 1. Elsewhere `except Exception` stands only at an isolation boundary (one request, one
self-stop attempt, a signal handler, a log record, another thread's result), with a comment
saying why; everything else catches what it can handle.
"""

from __future__ import annotations


class SidecarError(Exception):
    """Base class for errors the sidecar raises deliberately."""


class ConfigError(SidecarError):
    """An environment variable holds a value the sidecar cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class UsageError(SidecarError):
    """A command-line flag or argument is invalid."""


class StartupError(SidecarError):
    """The sidecar cannot start, e.g. the local API port is already in use."""


class GameStartError(SidecarError):
    """The game command could not be executed (not found: 127, not executable: 126)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class DemoError(SidecarError):
    """A step of the demo failed; the message names the step and what went wrong."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"failed while {step}: {' '.join(message.split())}")


class HttpError(SidecarError):
    """An error answer to a request: `status` and a message for the body. Each server renders
    it in its own shape."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
