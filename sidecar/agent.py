"""Wiring and order: the agent owns the lifecycle, the local API, the self-stop, the game (any
mode, through sidecar.game.Game) and every background task.

Start-up:  bind the local API (port in use → StartupError) → start the game → background tasks.
Main loop: `_timer_loop` sleeps until the lifecycle's next deadline, or until the lifecycle
           announces a change that needs re-planning (`Change.TIMERS`); when `poll()` releases
           the stop decision it starts the one self-stop task.
Shutdown:  a signal sets a flag; `run()` then forwards it to the game (run mode), waits for the
           game under SIDECAR_TERM_GRACE, cancels the tasks, closes the SSE streams, the runner
           and the HTTP session, and releases the game — each step bounded.

Signal handlers only record what happened and wake the main coroutine (uvicorn's pattern).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from sidecar import __version__
from sidecar.addresses import url_host
from sidecar.api import BODY_TIMEOUT, LocalApi
from sidecar.config import Settings, StopFailurePolicy
from sidecar.deployment import DeploymentInfo, parse_deployment
from sidecar.edgegap import AttemptResult, SelfStopClient, StopOutcome, StopResult
from sidecar.errors import GameStartError, StartupError
from sidecar.events import EventHub
from sidecar.exit_codes import Ending, exit_code
from sidecar.game import Game, GameExit, NoGame
from sidecar.lifecycle import TIMER_NAMES, Change, Lifecycle, ReadySource, State, StopDecision
from sidecar.metrics import RequestCounter
from sidecar.output import submit_record, write_record
from sidecar.redaction import redact, redact_url
from sidecar.status import Outcome, StatusView, StopProgress

log = logging.getLogger("sidecar")

SHUTDOWN_STEP_TIMEOUT = 5.0


class Agent:
    """One sidecar around one game: a child (run), a watched process, or none (serve)."""

    def __init__(
        self,
        settings: Settings,
        *,
        game: Game | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.game: Game = game if game is not None else NoGame()
        self.clock = clock
        # Embedders and in-process tests keep their own signal handling.
        self.handle_signals = handle_signals
        self.lifecycle = Lifecycle(settings.timer_settings(), clock)
        self.deployment: DeploymentInfo = parse_deployment(
            os.environ if environ is None else environ
        )
        self.events = EventHub()
        self.requests = RequestCounter()
        self.dry_run = settings.effective_dry_run
        self.api_token = (
            settings.api_token.get_secret_value() if settings.api_token is not None else None
        )
        self._secrets = settings.secrets()
        self.stop_progress = StopProgress()
        self.status_view = StatusView(
            self.lifecycle,
            self.stop_progress,
            self.game,
            self.deployment,
            dry_run=self.dry_run,
            secrets=self._secrets,
            clock=clock,
        )
        self.port: int | None = None
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._exit_code: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._signals_seen: list[int] = []
        self.lifecycle.subscribe(self._on_transition)
        self.lifecycle.on_change(self._on_change)

    # --- start-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the API, then start the game and the background tasks."""
        loop = asyncio.get_running_loop()
        for warning in self.deployment.warnings:
            log.warning("platform variable ignored: %s", warning)
        if self.dry_run:
            log.warning(
                "dry-run: %s; the sidecar will log the self-stop it would send instead of "
                "sending it",
                self.settings.dry_run_reason,
            )
        await self._start_api()
        # Build the request models off the event loop now that /healthz answers (see api.py).
        # Best effort: the models load on first use anyway, so a failure here (descriptors
        # exhausted at start-up) must not count as a failed task and end the sidecar.
        self._spawn(self._warm_models(), "warm-models")
        if not self.dry_run:
            # One session for every attempt: connection reuse and one DNS cache.
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": f"edgegap-sidecar/{__version__}"}
            )
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.on_terminate_signal, sig)
            for sig in self.game.forwarded_signals:
                loop.add_signal_handler(sig, self.game.send_signal, sig)
        self._start_game()
        if self.settings.network_idle_timeout > 0:
            self._spawn(self._network_sampler(), "network-idle")
        self._spawn(self._timer_loop(), "timers")

    def local_api(self, *, body_timeout: float = BODY_TIMEOUT) -> LocalApi:
        """The local API's routes over this agent's lifecycle, status and events."""
        return LocalApi(
            self.lifecycle,
            self.status_view,
            self.events,
            self.requests,
            token=self.api_token,
            body_timeout=body_timeout,
        )

    async def _start_api(self) -> None:
        from sidecar.http_server import ApiRunner

        # Header, keep-alive and write-stall timeouts, JSON answers to malformed requests and
        # rate-limited accept errors: see http_server. Short shutdown timeout: SSE streams are
        # closed explicitly before cleanup.
        self._runner = ApiRunner(
            self.local_api().build_app(),
            access_log=None,
            handle_signals=False,
            shutdown_timeout=1.0,
        )
        await self._runner.setup()
        host, port = self.settings.host, self.settings.port
        site = web.TCPSite(self._runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {host}:{port}: the port is already in use (set "
                    "SIDECAR_PORT to a free port)"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else port
        log.info(
            "edgegap-sidecar %s listening on http://%s:%s (%s)",
            __version__,
            host,
            self.port,
            self.game.mode,
        )

    async def _warm_models(self) -> None:
        try:
            await asyncio.to_thread(importlib.import_module, "sidecar.models")
        except Exception as exc:
            log.debug("could not load the request models ahead of use: %r", exc)

    def _start_game(self) -> None:
        host = self.settings.host
        # A game we start finds the local API through these, whatever port we ended up on.
        api_env = {
            "SIDECAR_HOST": host,
            "SIDECAR_PORT": str(self.port),
            "SIDECAR_URL": f"http://{url_host(host)}:{self.port}",
        }
        try:
            self.game.start(api_env)
        except GameStartError as exc:
            log.error("%s", exc)
            self.lifecycle.game_exited(exc.exit_code, detail=str(exc))
            return
        if self.game.pid is not None:
            self._spawn(self._wait_game(), "game")
            self._spawn(self._port_readiness(), "port-readiness")

    # --- main loop -----------------------------------------------------------------------------
    async def run(self) -> int:
        """Start, serve until finished, shut down in order. Returns the process exit code."""
        await self.start()
        try:
            await self._finished.wait()
        finally:
            await self.close()
        return self._exit_code if self._exit_code is not None else 0

    @property
    def exit_code(self) -> int | None:
        """The code `run()` will return, once the agent has decided to finish."""
        return self._exit_code

    async def wait_finished(self) -> int:
        await self._finished.wait()
        return self._exit_code if self._exit_code is not None else 0

    def finish(self, ending: Ending) -> None:
        """Finish for `ending`; the first ending decides the exit code."""
        if self._exit_code is None:
            ended = self.game.exit
            self._exit_code = exit_code(ending, ended.exit_code if ended else None)
        self._finished.set()

    def _on_change(self, change: Change) -> None:
        if change is Change.TIMERS:
            self._wake.set()

    async def _timer_loop(self) -> None:
        lifecycle = self.lifecycle
        while True:
            decision = lifecycle.poll()
            # After poll(): what poll() itself changed is planned for just below.
            self._wake.clear()
            if decision is not None and self._stop_task is None:
                self._stop_task = self._spawn(self._self_stop(decision), "self-stop")
            deadline = lifecycle.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - self.clock())
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
            # arrives as the wake-up completes (a SIGTERM does both), and shutdown would hang.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    def _on_transition(self, old: State, new: State) -> None:
        decision = self.lifecycle.decision
        if new is State.DRAINING and decision is not None:
            log.info(
                "state %s -> %s: stop decided (%s: %s), self-stop in %.3gs",
                old,
                new,
                decision.reason,
                decision.detail,
                decision.grace,
            )
        else:
            log.info("state %s -> %s", old, new)
        self.events.publish("state", self.status_view.to_json())

    # --- self-stop -----------------------------------------------------------------------------
    def _log_storage_for(self, decision: StopDecision) -> str | None:
        if decision.log_storage_override is not None:
            return decision.log_storage_override
        if decision.abnormal:
            return self.settings.effective_error_log_storage
        return self.settings.log_storage

    async def _self_stop(self, decision: StopDecision) -> None:
        storage = self._log_storage_for(decision)
        self.stop_progress.log_storage = storage
        # In run mode a game-exit decision is only made after wait() drained the relay, so this
        # record comes after every byte of the game's output. A stdout that is broken or stalled
        # costs at most output.RECORD_TIMEOUT here; the record then goes to stderr (SPEC §11).
        await write_record(self._stop_record(decision, storage))
        if self.dry_run:
            log.warning(
                "dry-run: would send DELETE %s%s (reason %s)",
                redact_url(self.settings.delete_url) or "<ARBITRIUM_DELETE_URL unset>",
                f"?container_log_storage={storage}" if storage is not None else "",
                decision.reason,
            )
            self.stop_progress.outcome = Outcome.DRY_RUN
            self.lifecycle.stop_accepted()
            await self._after_stop(ok=True)
            return
        assert self._session is not None
        assert self.settings.delete_url is not None
        assert self.settings.delete_token is not None
        client = SelfStopClient(
            self._session,
            self.settings.delete_url,
            self.settings.delete_token.get_secret_value(),
            attempt_timeout=self.settings.stop_attempt_timeout,
            retry_budget=self.settings.stop_retry_budget,
        )
        try:
            result: StopResult = await client.stop(storage, self._on_attempt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The client treats every attempt's failure as retryable and never raises; if it
            # still did, this is a bug, and the fallback must run rather than the task die with
            # the state stuck at `stopping` (SPEC §11).
            log.error("self-stop client failed: %s", redact(repr(exc), self._secrets), exc_info=exc)
            result = StopResult(StopOutcome.FAILED, self.stop_progress.attempts, None, repr(exc))
        self.stop_progress.outcome = Outcome(result.outcome.value)
        if result.ok:
            log.info(
                "self-stop %s (HTTP %s after %d attempt%s)",
                "accepted" if result.outcome is StopOutcome.ACCEPTED else "found it already gone",
                result.status,
                result.attempts,
                "" if result.attempts == 1 else "s",
            )
            self.lifecycle.stop_accepted()
        else:
            self.stop_progress.last_error = result.error
            log.error(
                "self-stop failed for good after %d attempt%s: %s (SIDECAR_ON_STOP_FAILURE=%s)",
                result.attempts,
                "" if result.attempts == 1 else "s",
                result.error,
                self.settings.on_stop_failure,
            )
            self.lifecycle.stop_failed()
        await self._after_stop(ok=result.ok)

    def _on_attempt(self, attempt: AttemptResult) -> None:
        progress = self.stop_progress
        progress.attempts = attempt.attempt
        progress.last_status = attempt.status
        progress.last_error = attempt.error
        self.status_view.changed()
        if attempt.retry_in is not None:
            log.warning(
                "self-stop attempt %d: %s; retrying in %.2fs",
                attempt.attempt,
                attempt.error or f"HTTP {attempt.status}",
                attempt.retry_in,
            )
        self.events.publish("state", self.status_view.to_json())

    async def _after_stop(self, *, ok: bool) -> None:
        """Run mode ends once the game is gone; the fallback decides what a failure does."""
        failed_exit = not ok and self.settings.on_stop_failure is StopFailurePolicy.EXIT
        if self.game.exit is not None and (ok or failed_exit):
            self.finish(Ending.STOPPED if ok else Ending.STOP_FAILED)
            return
        if failed_exit:
            if self.game.ours:
                log.error("terminating the game: the deployment could not stop itself")
                await self.game.terminate(self.settings.term_grace)
            self.finish(Ending.STOP_FAILED)
        # ok (or failed with `stay`): wait for the platform's SIGTERM.

    def _stop_record(self, decision: StopDecision, storage: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event": "sidecar.stop",
            "reason": decision.reason.value,
            "detail": decision.detail,
            "match_result": decision.match_result,
            "uptime_s": round(self.lifecycle.uptime(), 3),
            "players_peak": self.lifecycle.players_peak,
            "log_storage": storage,
            "dry_run": self.dry_run,
            "request_id": self.deployment.request_id,
        }
        if self.lifecycle.later_triggers:
            record["later_triggers"] = [t.reason.value for t in self.lifecycle.later_triggers]
        game_exit = self.game.exit
        if game_exit is not None and decision.exit_code is not None:
            record["exit_code"] = game_exit.exit_code
            record["signal"] = game_exit.signal_name
            if game_exit.crashed:
                record["last_lines"] = list(game_exit.tail)
        return record

    # --- the game ------------------------------------------------------------------------------
    async def _wait_game(self) -> None:
        # For our child, wait() returns only after every byte of its output was relayed.
        game_exit = await self.game.wait()
        self.status_view.changed()
        if self.lifecycle.state is State.TERMINATING:
            return  # the platform is stopping us; the signal path finishes
        log.info("%s exited: %s", self.game.name, game_exit.describe())
        self.lifecycle.game_exited(game_exit.exit_code, game_exit.signal_name)
        if self.lifecycle.state in (State.STOPPED, State.FAILED):
            # The stop finished before the game went away (e.g. match ended, then the game quit).
            await self._after_stop(ok=self.lifecycle.state is State.STOPPED)

    async def _port_readiness(self) -> None:
        """Watch the game's sockets until it listens on a game port (SPEC §5): ready."""
        from sidecar.watchers import poll_game_port

        lc = self.lifecycle
        found = await poll_game_port(
            self.game.pids,
            self.deployment.internal_ports,
            lambda: lc.state is State.STARTING and lc.ready_at is None,
            self.clock,
        )
        if found is not None and lc.state is State.STARTING:
            protocol, port = found
            log.info("game is listening on %s port %d: ready", protocol, port)
            lc.ready(ReadySource.PORT)

    async def _network_sampler(self) -> None:
        from sidecar.watchers import nic_packets_total

        interval = min(1.0, max(0.1, self.settings.network_idle_timeout / 10))
        while not self.lifecycle.stop_decided and self.lifecycle.state is not State.TERMINATING:
            self.lifecycle.network_sample(nic_packets_total())
            await asyncio.sleep(interval)

    # --- signals -------------------------------------------------------------------------------
    def on_terminate_signal(self, sig: int) -> None:
        try:
            self._on_terminate_signal(sig)
        except Exception:
            # A signal must never be swallowed: whatever failed, the game still gets it and the
            # sidecar still finishes (SPEC §11).
            log.exception("handling signal %d failed; forwarding it and exiting", sig)
            self.game.send_signal(sig)
            if not self.game.ours:
                self.finish(Ending.TERMINATED)

    def _on_terminate_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self._signals_seen.append(sig)
        if self.lifecycle.state is State.TERMINATING:
            if sig == signal.SIGINT and self._signals_seen.count(signal.SIGINT) >= 2:
                log.warning("second SIGINT: forcing exit")
                self.game.send_signal(signal.SIGKILL)
                self.finish(Ending.FORCED)
            return
        # Queued, never awaited or written here: a signal handler must not block on a stalled
        # stdout, nor raise on a broken one, or the signal would never reach the game.
        submit_record({"event": "sidecar.terminate", "signal": name})
        log.info("%s received: the platform is stopping the deployment", name)
        self.lifecycle.terminating(name)
        if self._stop_task is not None and not self._stop_task.done():
            self._stop_task.cancel()  # the deployment is stopping anyway
        if self.game.ours:
            self._spawn(self._terminate_game(sig), "terminate-game")
        else:
            self.finish(Ending.TERMINATED)

    async def _terminate_game(self, sig: int) -> None:
        await self.game.terminate(self.settings.term_grace, sig)
        self.finish(Ending.TERMINATED)

    # --- tasks and shutdown --------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"sidecar-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "background task %s failed: %s",
                task.get_name(),
                redact(repr(exc), self._secrets),
                exc_info=exc,
            )
            self.finish(Ending.BUG)

    async def close(self) -> None:
        """Shut down in order, each step bounded."""
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT, *self.game.forwarded_signals):
                loop.remove_signal_handler(sig)
        game = self.game
        if game.ours and game.exit is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    game.terminate(self.settings.term_grace),
                    self.settings.term_grace + SHUTDOWN_STEP_TIMEOUT,
                )
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_STEP_TIMEOUT)
        self.events.close()  # ends SSE streams so the runner's cleanup does not wait on them
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), SHUTDOWN_STEP_TIMEOUT)
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        game.close()  # last: the reaper reaps the game's orphans until here


# Re-exported for the CLI and tests that name timers.
__all__ = ["TIMER_NAMES", "Agent", "GameExit"]
