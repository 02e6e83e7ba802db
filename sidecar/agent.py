"""Wiring and order: the agent owns the lifecycle, the local API (and the Agones facade when
SIDECAR_AGONES is on), the self-stop, the game (any mode, through sidecar.game.Game) and every
background task.

Start-up:  the signal handlers (sidecar.signals: one per row of the table for this mode) →
           bind the local API, then the Agones facade (port in use → StartupError) → start the
           game → background tasks.
Main loop: `_timer_loop` sleeps until the lifecycle's next deadline, or until the lifecycle
           announces a change that needs re-planning (`on_replan`); when `poll()` releases the
           stop decision it starts the one self-stop task.
Shutdown:  a signal sets a flag; `run()` then forwards it to the game (run mode), waits for the
           game under SIDECAR_TERM_GRACE, sweeps what the game left behind (run mode), cancels
           the tasks (the self-stop's among them), closes the SSE and Agones watch streams and
           both APIs, ends the result delivery, closes the outbound HTTP session last of the
           network, releases the game, and only then leaves the signals ignored until the
           process has exited (a stray one during the last flush must not end it) — each step
           bounded.

Signal handlers only record what happened and wake the main coroutine (uvicorn's pattern); they
reach the loop through sidecar.signal_relay, which loses none to a flood of others.

A little over 450 lines on purpose: this is the one file where the order is written (start-up,
the stop, the signals, shutdown), and each part is a few lines of calls into the module that does
the work (sidecar.stop, sidecar.signals' table, sidecar.outbound, sidecar.game). Splitting the
signal handlers out would put the shutdown order in two files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from sidecar import __version__
from sidecar.addresses import url_host
from sidecar.api import LocalApi
from sidecar.config import Settings
from sidecar.deployment import parse_deployment
from sidecar.errors import GameStartError, StartupError
from sidecar.events import EventHub
from sidecar.exit_codes import Ending, exit_code
from sidecar.game import Game, NoGame
from sidecar.lifecycle import Lifecycle, State, StopDecision
from sidecar.metrics import RequestCounter
from sidecar.outbound import OutboundSession
from sidecar.output import submit_record
from sidecar.redaction import redact
from sidecar.result import ResultDelivery
from sidecar.signal_relay import RELAY, release_startup_signals
from sidecar.signals import SignalAction, signal_name
from sidecar.signals import plan as signal_plan
from sidecar.status import StatusView, StopProgress
from sidecar.stop import StopSequence, after_stop
from sidecar.tasks import BackgroundTasks

if TYPE_CHECKING:
    from sidecar.agones.app import AgonesFacade
    from sidecar.agones.grpc_server import AgonesGrpc

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
        self.handle_signals = handle_signals  # embedders and in-process tests keep their own
        self.deployment = parse_deployment(os.environ if environ is None else environ)
        match = self.deployment.match  # SPEC §12: the matchmaker's tickets, if any
        self.lifecycle = lifecycle = Lifecycle(
            settings.timer_settings(),
            clock,
            match_id=match.match_id,
            expected=match.expected(),
            quorum=settings.match_quorum,
        )
        self.events = EventHub()
        self.requests = RequestCounter()
        self._secrets = secrets = settings.secrets()
        progress = StopProgress()
        result_token = settings.result_token
        # The one outbound HTTP session: every platform client (the self-stop, the result
        # delivery) sends on it; opened at start-up when one of them may send, closed last.
        self._http = OutboundSession()
        # SPEC §12: the match result, delivered once a stop is decided.
        self._result = ResultDelivery(
            settings.result_url,
            result_token.get_secret_value() if result_token is not None else None,
            attempt_timeout=settings.stop_attempt_timeout,
            budget=settings.result_budget,
            on_progress=self._stop_progressed,
            http=self._http,
        )
        self.status_view = view = StatusView(
            lifecycle,
            progress,
            self.game,
            self.deployment,
            secrets=secrets,
            clock=clock,
            dry_run=settings.effective_dry_run,
            delivery=self._result.progress,
        )
        self._stop = StopSequence(
            settings,
            lifecycle,
            progress,
            http=self._http,
            request_id=self.deployment.request_id,
            on_progress=self._stop_progressed,
            secrets=secrets,
            result=self._result,
        )
        token = settings.api_token.get_secret_value() if settings.api_token is not None else None
        self.api = LocalApi(
            lifecycle,
            view,
            self.events,
            self.requests,
            token=token,
            match_strict=settings.match_strict,
            secrets=secrets,
        )
        self.agones: AgonesFacade | None = None  # SPEC §10, when SIDECAR_AGONES=true
        self.agones_grpc: AgonesGrpc | None = None  # SPEC §10.1: the same SDK core over gRPC
        self.port: int | None = None
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._exit_code: int | None = None
        self._tasks = BackgroundTasks(self._task_failed)
        self._stop_task: asyncio.Task[None] | None = None
        self._signals_seen: list[int] = []
        self._signals_logged: set[int] = set()
        self._handled_signals: list[int] = []
        self._terminate_recorded = False
        self._closing = False
        self.lifecycle.subscribe(self._on_transition)
        self.lifecycle.on_replan(self._wake.set)

    # --- start-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the API, then start the game and the background tasks."""
        loop = asyncio.get_running_loop()
        for warning in self.deployment.warnings:
            # Each warning says what became of the value (ignored, skipped): not all are ignored.
            log.warning("platform variable: %s", warning)
        if self.lifecycle.expected is not None:
            log.info(
                "match %s: %d players expected, quorum %s, no-show timeout %gs%s",
                self.lifecycle.match_id or "(no MM_MATCH_ID)",
                self.lifecycle.expected_count,
                self.settings.match_quorum,
                self.settings.no_show_timeout,
                ", strict" if self.settings.match_strict else "",
            )
        if self.settings.effective_dry_run:
            log.warning(
                "dry-run: %s; the sidecar will log the self-stop it would send instead of "
                "sending it",
                self.settings.dry_run_reason,
            )
        if self.handle_signals:
            # First: from the line that says we listen on, no signal can end us unannounced.
            self._install_signal_handlers(loop)
        host = self.settings.host
        self.port = await self.api.start(host, self.settings.port)
        mode = self.game.mode
        log.info(
            "edgegap-sidecar %s listening on http://%s:%s (%s); timers: %s",
            __version__,
            host,
            self.port,
            mode,
            self.settings.timers_summary(),
        )
        if self.settings.agones:
            await self._start_agones()
        self._tasks.spawn(self.api.warm_up(), "warm-models")
        if not self.settings.effective_dry_run or self._result.enabled:
            self._http.open()  # now, so the stop (or the result) waits for nothing at the end
        if self._terminate_recorded:
            # A termination signal arrived while we bound the APIs: the agent is finishing
            # already, and a terminated sidecar starts no game (nor timers).
            return
        self._start_game()
        if self.settings.network_idle_timeout > 0:
            from sidecar.watchers import feed_network_samples

            idle_timeout = self.settings.network_idle_timeout
            self._tasks.spawn(feed_network_samples(self.lifecycle, idle_timeout), "network-idle")
        self._tasks.spawn(self._timer_loop(), "timers")

    async def _start_agones(self) -> None:
        """The Agones SDK facade (SPEC §10), a second API over the same lifecycle, served over
        REST and gRPC (§10.1) from one SDK core."""
        from sidecar.agones.app import AgonesFacade
        from sidecar.agones.grpc_server import AgonesGrpc

        facade = AgonesFacade.from_settings(self.lifecycle, self.deployment, self.settings)
        grpc = AgonesGrpc(facade.sdk, port=self.settings.agones_grpc_port)
        try:
            await facade.start()
            try:
                await grpc.start()
            except StartupError:
                await facade.close()
                raise
        except StartupError:
            await self.api.close()  # already bound: release it before the CLI exits 3
            raise
        self.agones = facade
        self.agones_grpc = grpc

    def _start_game(self) -> None:
        host = self.settings.host
        # A game we start finds the local API through these, whatever port we ended up on.
        api_env = {
            "SIDECAR_HOST": host,
            "SIDECAR_PORT": str(self.port),
            "SIDECAR_URL": f"http://{url_host(host)}:{self.port}",
        }
        if self.agones is not None:
            api_env["AGONES_SDK_HTTP_PORT"] = str(self.agones.port)
        if self.agones_grpc is not None:
            api_env["AGONES_SDK_GRPC_PORT"] = str(self.agones_grpc.port)
        try:
            self.game.start(api_env)
        except GameStartError as exc:
            log.error("%s", exc)
            self.lifecycle.game_exited(exc.exit_code, detail=str(exc))
            return
        if self.game.pid is not None:
            from sidecar.watchers import watch_port_readiness

            ports = self.deployment.internal_ports
            self._tasks.spawn(self._wait_game(), "game")
            self._tasks.spawn(
                watch_port_readiness(self.lifecycle, self.game, ports, self.clock), "port-readiness"
            )

    # --- main loop -----------------------------------------------------------------------------
    async def run(self) -> int:
        """Start, serve until finished, shut down in order. Returns the process exit code."""
        await self.start()
        try:
            return await self.wait_finished()
        finally:
            await self.close()

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

    async def _timer_loop(self) -> None:
        lifecycle = self.lifecycle
        while True:
            decision = lifecycle.poll()
            # After poll(): what poll() itself changed is planned for just below.
            self._wake.clear()
            if decision is not None and self._stop_task is None:
                self._stop_task = self._tasks.spawn(self._self_stop(decision), "self-stop")
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
            self._stop.start_result(decision)  # SPEC §12: during the grace, not after it
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

    # --- the stop ------------------------------------------------------------------------------
    async def _self_stop(self, decision: StopDecision) -> None:
        ok = await self._stop.run(decision, self.game.exit)
        await self._after_stop(ok)

    def _stop_progressed(self) -> None:
        self.status_view.changed()
        self.events.publish("state", self.status_view.to_json())

    async def _after_stop(self, ok: bool) -> None:
        """Run mode ends once the game is gone; the fallback decides what a failure does."""
        game = self.game
        ending = after_stop(ok, self.settings.on_stop_failure, game_gone=game.exit is not None)
        if ending is Ending.STOP_FAILED and game.exit is None and game.pid is not None:
            # SPEC §4: `exit` terminates the game, a watched one too: beside it the sidecar is
            # not the container's main process, and exiting alone would leave it billing.
            log.error("terminating the %s: the deployment could not stop itself", game.kind)
            await game.terminate(self.settings.term_grace)
        if ending is not None:
            self.finish(ending)
        # None (accepted, or failed with `stay`): wait for the platform's SIGTERM.

    # --- the game ------------------------------------------------------------------------------
    async def _wait_game(self) -> None:
        # For our child, wait() returns only after every byte of its output was relayed.
        game_exit = await self.game.wait()
        self.status_view.changed()
        terminating = self.lifecycle.state is State.TERMINATING
        if not terminating:
            log.info("%s exited: %s", self.game.name, game_exit.describe())
            self.lifecycle.game_exited(
                game_exit.exit_code, game_exit.signal_name, game_exit.stop_detail()
            )
        # What the game left behind goes now, beside the stop (close() waits for it); after
        # the stop is decided, so that however much there is to end, it never delays that.
        self._tasks.spawn(self.game.sweep(self.settings.term_grace), "sweep")
        if terminating:
            return  # the platform is stopping us; the signal path finishes
        if self.lifecycle.state in (State.STOPPED, State.FAILED):
            # The stop finished before the game went away (e.g. match ended, then the game quit).
            await self._after_stop(self.lifecycle.state is State.STOPPED)

    # --- signals -------------------------------------------------------------------------------
    def _install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        """One handler per row of the signal table (sidecar.signals) for this mode."""
        handlers = {
            SignalAction.TERMINATE: self.on_terminate_signal,
            SignalAction.FORWARD: self._forward_signal,
            SignalAction.IGNORE: self._ignore_signal,
        }
        for sig, action in signal_plan(self.game.mode).items():
            RELAY.route(loop, sig, handlers[action])
            self._handled_signals.append(sig)
        # What arrived while the CLI held the signals (the first moments of start-up) is
        # delivered now, to the handlers above.
        release_startup_signals()

    def _remove_signal_handlers(self) -> None:
        # In a sidecar's own process, not given back: it exits right after (the last records
        # are flushed first), and until then a stray signal must not end it with its default
        # action. A process that embeds the agent (tests, the demo) gets its own back.
        RELAY.release(self._handled_signals, keep_ignoring=RELAY.process_is_ours)
        self._handled_signals.clear()

    def _first_time(self, sig: int) -> bool:
        """True the first time `sig` arrives: a flood of one signal logs one line, not a disk's
        worth."""
        if sig in self._signals_logged:
            return False
        self._signals_logged.add(sig)
        return True

    def _forward_signal(self, sig: int) -> None:
        if self._first_time(sig):
            log.info(
                "%s received: forwarded to the %s (logged once; every one is forwarded)",
                signal_name(sig),
                self.game.kind,
            )
        self.game.send_signal(sig)

    def _ignore_signal(self, sig: int) -> None:
        if self._first_time(sig):
            log.warning(
                "%s received: ignored in %s (logged once; it does not stop the sidecar)",
                signal_name(sig),
                self.game.mode,
            )

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
        name = signal_name(sig)
        self._signals_seen.append(sig)
        if self._terminate_recorded:
            if sig == signal.SIGINT and self._signals_seen.count(signal.SIGINT) >= 2:
                log.warning("second SIGINT: forcing exit")
                self.game.send_signal(signal.SIGKILL)
                self.finish(Ending.FORCED)
            return
        self._terminate_recorded = True
        # First of all: no self-stop attempt may start once the platform is stopping us, even
        # if something below were to raise (asyncio hands the cancel down to a sleeping or
        # connecting retry in this same loop step).
        if self._stop_task is not None and not self._stop_task.done():
            self._stop_task.cancel()
        # The decided stop, if any, goes in the record too: the stored logs must say why the
        # deployment was ending even when the platform's SIGTERM cut the drain short.
        decision = self.lifecycle.decision
        # Queued, never awaited or written here: a signal handler must not block on a stalled
        # stdout, nor raise on a broken one, or the signal would never reach the game.
        submit_record(
            {
                "event": "sidecar.terminate",
                "signal": name,
                "stop_reason": None if decision is None else str(decision.reason),
                "stop_detail": None if decision is None else decision.detail,
            }
        )
        log.info("%s received: the platform is stopping the deployment", name)
        if self._closing:
            # Already shutting down (the stop finished): close() ends the game and its
            # leftovers; only pass the signal on, as received.
            self.game.send_signal(sig)
            return
        self.lifecycle.terminating(name)
        if self.game.ours:
            self._tasks.spawn(self._terminate_game(sig), "terminate-game")
        else:
            self.finish(Ending.TERMINATED)

    async def _terminate_game(self, sig: int) -> None:
        await self.game.terminate(self.settings.term_grace, sig)
        self.finish(Ending.TERMINATED)

    # --- tasks and shutdown --------------------------------------------------------------------
    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        log.error(
            "background task %s failed: %s",
            task.get_name(),
            redact(repr(exc), self._secrets),
            exc_info=exc,
        )
        self.finish(Ending.BUG)

    async def close(self) -> None:
        """Shut down in order, each step bounded. The signal handlers stay until the end: a
        stray signal during shutdown (or during the sweep) must not end us halfway."""
        self._closing = True
        game = self.game
        grace = self.settings.term_grace
        if game.ours and game.exit is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(game.terminate(grace), grace + SHUTDOWN_STEP_TIMEOUT)
        # Run mode: whatever the game left behind (even outside its group or session) ends
        # with us, not after us.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(game.sweep(grace), grace + SHUTDOWN_STEP_TIMEOUT)
        await self._tasks.cancel_all(SHUTDOWN_STEP_TIMEOUT)
        self.events.close()  # ends SSE streams so the runner's cleanup does not wait on them
        if self.agones is not None:
            await self.agones.close()  # ends its watch streams, then stops serving
            self.agones = None
        if self.agones_grpc is not None:
            await self.agones_grpc.close()  # its watch streams ended with the core above
            self.agones_grpc = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.api.close(), SHUTDOWN_STEP_TIMEOUT)
        # The result delivery gets no step of its own: it has had the whole shutdown so far.
        await self._result.close()
        # Last of the network: the self-stop task (cancelled above) and the delivery are over,
        # so nothing can still be waiting on the session.
        await self._http.close(SHUTDOWN_STEP_TIMEOUT)
        game.close()  # the reaper reaps the game's orphans until here
        if self.handle_signals:
            self._remove_signal_handlers()
