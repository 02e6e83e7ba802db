"""Command line: argv → command; errors → the exit codes of SPEC §3 (sidecar.exit_codes).

    1    an unexpected error, i.e. a bug (SPEC §3 gives 2 and 3 their own meanings)
    2    invalid configuration or usage (one line naming the variable or flag, no traceback)
    3    cannot start (e.g. the local API port is in use)

`main` is the last-resort guard of errors.py, and this is the only module that prints usage
errors. It also picks the agent's game: a child (`run`), a watched process (`serve --watch-*`)
or none. Heavy imports happen inside the commands, so `--version` and `check-config` stay
instant and `serve` imports only what it serves.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from sidecar import __version__
from sidecar.errors import ConfigError, SidecarError, StartupError, UsageError
from sidecar.exit_codes import EXIT_CANNOT_START, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

# At exit, how long queued records and log lines may take to reach stdout and stderr.
EXIT_FLUSH_SECONDS = 0.5


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors raise instead of exiting so main() owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgegap-sidecar",
        description="Stops an Edgegap deployment exactly once, for the right reason, "
        "with its logs. Configured by environment variables (see check-config).",
    )
    parser.add_argument("--version", action="version", version=f"edgegap-sidecar {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    run = commands.add_parser(
        "run",
        help="supervise the game: edgegap-sidecar run -- ./Server.x86_64 ARGS",
        description="Start the game as a child, relay its output, serve the local API and "
        "stop the deployment when the game exits or a timer fires.",
        epilog=_SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("game", nargs="*", help="the game command and its arguments")

    serve = commands.add_parser(
        "serve",
        help="serve the local API and timers beside a game started by something else",
        description="Serve the local API and the timers beside a game started by something "
        "else; with --watch-pid or --watch-name, that process's exit counts as the game's.",
        epilog=_SETTINGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    watch = serve.add_mutually_exclusive_group()
    watch.add_argument(
        "--watch-pid",
        type=_pid,
        metavar="PID",
        help="treat this PID's exit like the game's exit",
    )
    watch.add_argument(
        "--watch-name",
        metavar="NAME",
        help="find the game process by name and treat its exit like the game's exit",
    )

    check = commands.add_parser(
        "check-config",
        help="validate the environment and print the effective settings",
        description="Validate the environment and print the effective settings (secrets "
        "redacted); exit 0, or 2 naming the variable that is wrong. Unknown SIDECAR_* "
        "variables and unusual log-storage names are warnings.",
    )
    shape = check.add_mutually_exclusive_group()
    shape.add_argument(
        "--json",
        action="store_true",
        help='one JSON object keyed by variable name: durations in seconds, secrets as "***"',
    )
    shape.add_argument(
        "--list",
        action="store_true",
        help="list every variable with its default and meaning, without reading the environment",
    )
    check.add_argument(
        "--strict", action="store_true", help="exit 2 when an unknown SIDECAR_* variable is set"
    )
    status = commands.add_parser(
        "status",
        help="show what the running sidecar is doing (state, timers, players, the stop)",
        description="Ask the running sidecar, found through SIDECAR_URL, else SIDECAR_HOST and "
        "SIDECAR_PORT (with SIDECAR_API_TOKEN when set), and print its state, timers with "
        "time left, players, match and stop. Exit 0 when it answered, 1 when nothing did.",
    )
    status.add_argument("--json", action="store_true", help="the /v1/status body, unchanged")
    status.add_argument(
        "--watch",
        action="store_true",
        help="follow /v1/events, one line per change, until interrupted or the stream ends",
    )
    commands.add_parser(
        "healthcheck",
        help="exit 0 when the local API answers /healthz (for a Docker HEALTHCHECK in images "
        "without curl)",
        description="Exit 0 when the local API (SIDECAR_HOST/SIDECAR_PORT) answers /healthz, "
        "1 otherwise: a Docker HEALTHCHECK for images without curl.",
    )
    # emulate and demo own their flags (in their modules); they are parsed only when chosen,
    # so that `serve` and `run` never import the emulator.
    for name, help_text in _DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


# The largest pid_t: beyond it no process can exist, and psutil's lookup overflows.
_MAX_PID = 2**31 - 1


def _pid(text: str) -> int:
    """--watch-pid: ASCII digits only (int() would read Arabic-Indic digits as 12), 1 to the
    largest pid_t; argparse reports the ArgumentTypeError as a usage error naming the flag."""
    digits = text.strip()
    if digits.isascii() and digits.isdigit() and len(digits) <= 10 and 0 < int(digits) <= _MAX_PID:
        return int(digits)
    raise argparse.ArgumentTypeError(f"expected a process id, ASCII digits 1-{_MAX_PID}")


_SETTINGS_EPILOG = """\
Configured by environment variables (SIDECAR_HOST, SIDECAR_PORT, SIDECAR_API_TOKEN, the
timers SIDECAR_READY_TIMEOUT, SIDECAR_EMPTY_TIMEOUT... and the platform's ARBITRIUM_*).
Every variable with its default and meaning: edgegap-sidecar check-config --list"""

_DELEGATED = {
    "emulate": "run a local Edgegap API emulator (default http://127.0.0.1:9000)",
    "demo": "the whole lifecycle on loopback, no account: emulator, sidecar, game and players",
}


def _delegated_args(command: str, rest: list[str]) -> argparse.Namespace:
    parser = _Parser(prog=f"edgegap-sidecar {command}", description=_DELEGATED[command])
    if command == "emulate":
        from sidecar import emulator

        emulator.add_arguments(parser)
    elif command == "demo":
        from sidecar import demo

        demo.add_arguments(parser)
    return parser.parse_args(rest)


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        # The process's own command line: `run` and `serve` hold the catchable signals until
        # the agent's handlers exist, so that none ends the sidecar silently meanwhile.
        from sidecar.signal_relay import hold_startup_signals_for

        hold_startup_signals_for(sys.argv[1:])
    # Before anything opens a file: a closed fd 1 would otherwise be reused by the next file we
    # open, and the stop record written into it.
    from sidecar.output import reserve_stdio

    reserve_stdio()
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        # Everything after `run` belongs to the game, and `emulate`/`demo` parse their own
        # flags: argparse would otherwise try to read the game's `-batchmode` as ours.
        if args_list and args_list[0] == "run" and args_list[1:2] not in (["-h"], ["--help"]):
            return _run_game(args_list[1:])
        if args_list and args_list[0] in _DELEGATED:
            return _run_delegated(args_list[0], _delegated_args(args_list[0], args_list[1:]))
        code = _dispatch(build_parser().parse_args(args_list))
        # Flushed here, where a reader that left is handled below, not at exit. (None when the
        # process started with fd 1 closed.)
        if sys.stdout is not None:
            sys.stdout.flush()
        return code
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"edgegap-sidecar: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"edgegap-sidecar: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    except SidecarError as exc:
        # Raised on purpose, so its message is the whole explanation. (GameStartError never
        # gets here: the agent turns it into the game's exit, 127 or 126.)
        print(f"edgegap-sidecar: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError as exc:
        # `check-config | head`: the reader has what it wanted and left. Not a bug, and not worth
        # a traceback (nor Python's own "Exception ignored" when stdout is flushed at exit).
        if not _stdout_reader_gone():
            _report_bug(exc)
            return EXIT_FAILED
        _discard_stdout()
        return EXIT_OK
    except Exception as exc:
        # The last resort (errors.py): a bug still ends in one line saying what happened and a
        # known exit code, never in a bare traceback that may carry a token.
        _report_bug(exc)
        return EXIT_FAILED


def _stdout_reader_gone() -> bool:
    """True when fd 1 is a pipe or socket whose reader has closed it (poll reports POLLERR on
    the write end), so a BrokenPipeError came from our output and not from a connection."""
    import select

    try:
        poller = select.poll()
        poller.register(1, select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def _discard_stdout() -> None:
    """Point fd 1 at /dev/null: the last flush of sys.stdout at exit has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def _report_bug(exc: Exception) -> None:
    """One line naming the error, then its traceback, on stderr through the sidecar's logging
    (JSON when SIDECAR_LOG_FORMAT=json) with every secret redacted."""
    import logging
    import traceback

    from sidecar.config import environ_secrets
    from sidecar.logs import flush_logs
    from sidecar.redaction import redact

    secrets = environ_secrets()
    summary = redact(f"{type(exc).__name__}: {exc}", secrets)
    trace = redact("".join(traceback.format_exception(exc)).rstrip(), secrets)
    # The text as the message, without arguments: the text format escapes control characters
    # in arguments, which would fold the traceback into one line.
    message = f"edgegap-sidecar: unexpected error (a bug; exit {EXIT_FAILED}): {summary}\n{trace}"
    logging.getLogger("sidecar.cli").critical(message)
    flush_logs(EXIT_FLUSH_SECONDS)


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "check-config":
        return _check_config(json_output=args.json, strict=args.strict, list_only=args.list)
    if command == "healthcheck":
        return _healthcheck()
    if command == "status":
        from sidecar.status_command import run_status

        return run_status(os.environ, json_output=args.json, watch=args.watch)
    watch_pid: int | None = None
    if args.watch_name is not None:
        from sidecar.watchers import find_pid_by_name

        watch_pid = find_pid_by_name(args.watch_name)
        if watch_pid is None:
            raise UsageError(f"--watch-name: no running process is named {args.watch_name!r}")
    elif args.watch_pid is not None:
        watch_pid = args.watch_pid  # already a PID in range (_pid)
    return _serve(None, watch_pid)


def _run_game(argv: list[str]) -> int:
    game = argv[1:] if argv[:1] == ["--"] else argv
    if not game:
        raise UsageError(
            "edgegap-sidecar run: give the game command, e.g. edgegap-sidecar run -- ./Server"
        )
    return _serve(game, None)


def _run_delegated(command: str, args: argparse.Namespace) -> int:
    if command == "emulate":
        import asyncio

        from sidecar import emulator

        asyncio.run(emulator.run_emulator(emulator.options_from_args(args)))
        return EXIT_OK
    if command == "demo":
        from sidecar import demo

        return demo.main(args)
    raise UsageError(f"edgegap-sidecar: unknown command {command!r}")


def _serve(game: list[str] | None, watch_pid: int | None) -> int:
    import logging

    from sidecar.config import config_warnings, load_settings
    from sidecar.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level.value, settings.log_format.value, settings.secrets())
    # Before the agent starts: a mistyped variable explains a default that is in effect.
    for warning in config_warnings(settings, os.environ):
        logging.getLogger("sidecar.config").warning("%s", warning)

    from sidecar.agent import Agent
    from sidecar.game import Game, NoGame

    chosen: Game = NoGame()
    if game is not None:
        from sidecar.supervisor import ChildGame

        chosen = ChildGame(game, os.environ)
    elif watch_pid is not None:
        import psutil

        from sidecar.watchers import WatchedProcess

        if not psutil.pid_exists(watch_pid):
            raise UsageError(f"--watch-pid: no process has PID {watch_pid}")
        chosen = WatchedProcess(watch_pid)
    agent = Agent(settings, game=chosen)
    try:
        import asyncio  # here: until main() holds the signals, every import is a window

        return asyncio.run(agent.run())
    finally:
        # Records and log lines are written by threads; give them a moment to get out, but never
        # let a stalled stdout or stderr keep the process from exiting (SPEC §11).
        from sidecar.logs import flush_logs
        from sidecar.output import flush_records

        flush_records(EXIT_FLUSH_SECONDS)
        flush_logs(EXIT_FLUSH_SECONDS)


def _healthcheck() -> int:
    import http.client

    from sidecar.addresses import reachable_host
    from sidecar.config import load_settings

    settings = load_settings()
    # A wildcard bind is reached over loopback, like the game itself reaches it.
    host = reachable_host(settings.host)
    connection = http.client.HTTPConnection(host, settings.port, timeout=2.0)
    try:
        connection.request("GET", "/healthz")
        healthy = connection.getresponse().status == 200
    except OSError as exc:
        print(f"edgegap-sidecar healthcheck: {host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    return EXIT_OK if healthy else 1


def _check_config(*, json_output: bool, strict: bool, list_only: bool) -> int:
    from sidecar.config import (
        config_warnings,
        load_settings,
        redacted_settings,
        settings_json,
        unknown_variable_message,
        unknown_variables,
        variables_help,
    )
    from sidecar.deployment import parse_deployment
    from sidecar.redaction import redact

    if list_only:
        return _list_variables(variables_help())
    settings = load_settings()
    secrets = settings.secrets()

    def say(line: str, file: TextIO = sys.stdout) -> None:
        # Every line check-config writes passes through the one redaction (SPEC §4), whatever
        # built it: the report already redacts its values, this covers the rest.
        print(redact(line, secrets), file=file)

    if strict and (unknown := unknown_variables(os.environ)):
        # One line per unknown variable, all of them: fixing one at a time would be tedious.
        for name, close in unknown:
            print(
                f"edgegap-sidecar: {unknown_variable_message(name, close, strict=True)}",
                file=sys.stderr,
            )
        return EXIT_USAGE
    warnings = [*config_warnings(settings, os.environ), *parse_deployment(os.environ).warnings]
    if json_output:
        import json

        # Not through say(): settings_json redacts each value, and a short token (`null`, `2`)
        # replaced in the document's text would break the JSON.
        print(json.dumps(settings_json(settings), indent=2))
        for warning in warnings:  # stdout stays one JSON document
            say(f"edgegap-sidecar: warning: {warning}", sys.stderr)
        return EXIT_OK
    rows = redacted_settings(settings)
    width = max(len(name) for name in rows)
    say("edgegap-sidecar configuration (secrets redacted):")
    for name, value in rows.items():
        say(f"  {name:<{width}}  {value}")
    mode = f"dry-run ({settings.dry_run_reason})" if settings.effective_dry_run else "live"
    say(f"  {'mode':<{width}}  {mode}")
    say(f"  {'timers':<{width}}  {settings.timers_summary()}")
    for warning in warnings:
        say(f"  warning: {warning}")
    return EXIT_OK


def _list_variables(rows: list[tuple[str, str, str]]) -> int:
    width = max(len(name) for name, _, _ in rows)
    default_width = max(len(default) for _, default, _ in rows)
    print(f"  {'variable':<{width}}  {'default':<{default_width}}  meaning")
    for name, default, meaning in rows:
        print(f"  {name:<{width}}  {default:<{default_width}}  {meaning}")
    print(
        "Durations: 90, 90s, 1500ms, 5m, 1h or compound 1m30s, 1h 30m; 0 turns a timer off, "
        "anything else is at least 1ms."
    )
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
