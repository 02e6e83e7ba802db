"""Wiring and order: the agent owns the lifecycle, the local API, the self-stop client, the game
(run mode) or the watched process (watch mode), and every background task.

Start-up:  bind the local API (port in use → StartupError) → start the game → background tasks.
Main loop: `_timer_loop` sleeps until the lifecycle's next deadline or a wake-up; when `poll()`
           releases the stop decision it starts the one self-stop task.
Shutdown:  a signal sets a flag; `run()` then forwards it to the game (run mode), waits for the
           game under SIDECAR_TERM_GRACE, cancels the tasks, closes the SSE streams, the runner
           and the HTTP session — each step bounded.

Signal handlers only record what happened and wake the main coroutine (uvicorn's pattern).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from sidecar import __version__
from sidecar.addresses import url_host
from sidecar.api import LocalApi
from sidecar.config import Settings, StopFailurePolicy
from sidecar.deployment import DeploymentInfo, parse_deployment
from sidecar.edgegap import AttemptResult, SelfStopClient, StopOutcome, StopResult
from sidecar.errors import GameStartError, StartupError
from sidecar.events import EventHub
from sidecar.lifecycle import TIMER_NAMES, Lifecycle, State, StopDecision
from sidecar.metrics import Exposition, RequestCounter
from sidecar.output import submit_record, write_record
from sidecar.redaction import redact, redact_url

if TYPE_CHECKING:
    import psutil

    from sidecar.agones.app import AgonesFacade
    from sidecar.reaper import Reaper
    from sidecar.supervisor import GameExit, GameProcess
    from sidecar.watchers import GameStats, ProcessTreeSampler

log = logging.getLogger("sidecar")

# Port readiness is polled every 0.5 s at first (a game usually listens within seconds), then
# less often as the wait grows, up to every 5 s: a game that never listens (it reports ready
# over the API, or not at all) must not cost a scan of its sockets twice a second forever.
PORT_POLL_INTERVAL = 0.5
PORT_POLL_MAX_INTERVAL = 5.0
PORT_POLL_SLOWDOWN_AFTER = 10.0
STATS_MAX_AGE = 2.0
SHUTDOWN_STEP_TIMEOUT = 5.0


@dataclass
class StopProgress:
    attempts: int = 0
    last_error: str | None = None
    last_status: int | None = None
    outcome: str | None = None
    log_storage: str | None = None


class Agent:
    """One sidecar: serve mode (no game), run mode (`game` given) or watch mode (`watch_pid`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        game_argv: Sequence[str] | None = None,
        watch_pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.game_argv = list(game_argv) if game_argv else None
        self.watch_pid = watch_pid
        self.clock = clock
        # Embedders and in-process tests keep their own signal handling.
        self.handle_signals = handle_signals
        self.lifecycle = Lifecycle(settings.timer_settings(), clock)
        self.deployment: DeploymentInfo = parse_deployment(self.environ)
        self.events = EventHub()
        self.requests = RequestCounter()
        self.stop_progress = StopProgress()
        self.dry_run = settings.effective_dry_run
        self.api_token = (
            settings.api_token.get_secret_value() if settings.api_token is not None else None
        )
        self._secrets = settings.secrets()
        self.port: int | None = None
        self.game: GameProcess | None = None
        self.game_exit: GameExit | None = None
        self._sampler: ProcessTreeSampler | None = None
        self._watched: psutil.Process | None = None  # watch mode: the watched game
        self._reaper: Reaper | None = None
        self._stats: GameStats | None = None
        self._stats_at = -1e9
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._exit_code: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop_task: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._signals_seen: list[int] = []
        self.agones: AgonesFacade | None = None  # SPEC §10, when SIDECAR_AGONES=true
        # GET /v1/status is what games poll: its encoded body is reused until something changes
        # (`wake`/`touch` bump the version) or the clock moves to the next millisecond (every
        # time in it is rounded to the millisecond).
        self._status_version = 0
        self._status_cache: tuple[tuple[int, int], bytes] | None = None
        self.lifecycle.subscribe(self._on_transition)

    # --- start-up ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the API, then start the game (run mode) and the background tasks."""
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
        await self._start_agones()
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
            if self.game_argv is not None:
                for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2):
                    loop.add_signal_handler(sig, self._forward_signal, sig)
        if self.game_argv is not None:
            self._start_game()
        elif self.watch_pid is not None:
            self._spawn(self._watch_process(self.watch_pid), "watch")
        if self.game_argv is not None or self.watch_pid is not None:
            self._spawn(self._port_readiness(), "port-readiness")
        if self.settings.network_idle_timeout > 0:
            self._spawn(self._network_sampler(), "network-idle")
        self._spawn(self._timer_loop(), "timers")

    async def _start_api(self) -> None:
        from sidecar.http_server import ApiRunner

        app = LocalApi(self).build_app()
        # Header, keep-alive and write-stall timeouts, JSON answers to malformed requests and
        # rate-limited accept errors: see http_server. Short shutdown timeout: SSE streams are
        # closed explicitly before cleanup.
        self._runner = ApiRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"cannot listen on {self.settings.host}:{self.settings.port}: the port is "
                    "already in use (set SIDECAR_PORT to a free port)"
                ) from None
            raise StartupError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {exc.strerror}"
            ) from None
        addresses = self._runner.addresses
        self.port = addresses[0][1] if addresses else self.settings.port
        log.info(
            "edgegap-sidecar %s listening on http://%s:%s (%s)",
            __version__,
            self.settings.host,
            self.port,
            "run mode" if self.game_argv else "watch mode" if self.watch_pid else "serve mode",
        )

    async def _start_agones(self) -> None:
        """The Agones SDK facade (SPEC §10), a second API over the same lifecycle."""
        if not self.settings.agones:
            return
        from sidecar.agones.app import AgonesFacade
        from sidecar.agones.gameserver import FacadeOptions

        settings = self.settings
        options = FacadeOptions(
            players_list=settings.agones_players_list,
            auto_allocate=settings.agones_auto_allocate,
            manifest=settings.agones_gameserver,
            health_timeout=settings.health_timeout,
        )
        facade = AgonesFacade(
            self.lifecycle,
            options,
            self.deployment,
            port=settings.agones_http_port,
            notify=self.wake,
        )
        try:
            await facade.start()
        except StartupError:
            if self._runner is not None:
                await self._runner.cleanup()
                self._runner = None
            raise
        self.agones = facade

    async def _warm_models(self) -> None:
        try:
            await asyncio.to_thread(importlib.import_module, "sidecar.models")
        except Exception as exc:
            log.debug("could not load the request models ahead of use: %r", exc)

    def _start_game(self) -> None:
        from sidecar.reaper import Reaper
        from sidecar.supervisor import GameProcess

        assert self.game_argv is not None
        env = dict(self.environ)
        # The game finds the local API through these, whatever port we ended up on.
        env["SIDECAR_HOST"] = self.settings.host
        env["SIDECAR_PORT"] = str(self.port)
        env["SIDECAR_URL"] = f"http://{url_host(self.settings.host)}:{self.port}"
        if self.agones is not None:
            env["AGONES_SDK_HTTP_PORT"] = str(self.agones.port)
        # One reaper for the agent's whole life: orphans of the game that die while the
        # self-stop is still retrying (minutes) must be reaped too, not only the game.
        if Reaper.active() is None:
            self._reaper = Reaper()
            self._reaper.install()
        self.game = GameProcess(self.game_argv, env=env, reaper=Reaper.active())
        try:
            pid = self.game.start()
        except GameStartError as exc:
            log.error("%s", exc)
            self.game = None
            self._game_ended_without_process(exc)
            return
        log.info("game started (pid %d): %s", pid, " ".join(self.game_argv))
        self._spawn(self._wait_game(), "game")

    def _game_ended_without_process(self, exc: GameStartError) -> None:
        from sidecar.supervisor import GameExit

        self.game_exit = GameExit(returncode=exc.exit_code, signal=None, tail=(str(exc),))
        self.lifecycle.game_exited(exc.exit_code, detail=str(exc))
        self.wake()

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

    def wake(self) -> None:
        """Something changed that may move a deadline: re-plan the timers."""
        self._status_version += 1
        self._wake.set()
        if self.agones is not None:
            self.agones.changed()  # a roster or hold change the Agones watch must show

    def touch(self) -> None:
        """Something changed that status shows, but no timer needs re-planning now."""
        self._status_version += 1

    def finish(self, exit_code: int) -> None:
        if self._exit_code is None:
            self._exit_code = exit_code
        self._finished.set()

    async def _timer_loop(self) -> None:
        lifecycle = self.lifecycle
        while True:
            self._wake.clear()
            decision = lifecycle.poll()
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
        self.events.publish("state", self.status())
        self.wake()

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
            self.stop_progress.outcome = "dry_run"
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
        self.stop_progress.outcome = result.outcome.value
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
        self.touch()
        if attempt.retry_in is not None:
            log.warning(
                "self-stop attempt %d: %s; retrying in %.2fs",
                attempt.attempt,
                attempt.error or f"HTTP {attempt.status}",
                attempt.retry_in,
            )
        self.events.publish("state", self.status())

    async def _after_stop(self, *, ok: bool) -> None:
        """Run mode ends once the game is gone; the fallback decides what a failure does."""
        failed_exit = not ok and self.settings.on_stop_failure is StopFailurePolicy.EXIT
        if self.game_exit is not None and (ok or failed_exit):
            code = self.game_exit.exit_code
            self.finish(code if ok or code != 0 else 1)
            return
        if self.watch_pid is not None and self.game_exit is not None and (ok or failed_exit):
            self.finish(0 if ok else 1)
            return
        if failed_exit:
            if self.game is not None:
                log.error("terminating the game: the deployment could not stop itself")
                game_exit = await self.game.terminate(self.settings.term_grace)
                self.finish(game_exit.exit_code or 1)
            else:
                if self._watched is not None:
                    # SPEC §4: `exit` terminates the game. Beside a watched game the sidecar is
                    # not the container's main process: exiting alone would leave it billing.
                    from sidecar.watchers import terminate_process

                    log.error("terminating the watched game: the deployment could not stop itself")
                    await terminate_process(self._watched, self.settings.term_grace)
                self.finish(1)
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
        if self.game_exit is not None and decision.exit_code is not None:
            record["exit_code"] = self.game_exit.exit_code
            record["signal"] = self.game_exit.signal_name
            if self.game_exit.crashed:
                record["last_lines"] = list(self.game_exit.tail)
        return record

    # --- the game ------------------------------------------------------------------------------
    async def _wait_game(self) -> None:
        assert self.game is not None
        # wait() returns only after every byte of the game's output was relayed.
        await self._game_ended("game", await self.game.wait())

    async def _watch_process(self, pid: int) -> None:
        import psutil

        from sidecar.watchers import wait_for_exit

        # Taken now, while it runs: terminating it later must never hit a reused pid.
        with contextlib.suppress(psutil.Error):
            self._watched = psutil.Process(pid)

        await self._game_ended(f"watched process {pid}", await wait_for_exit(pid))

    async def _game_ended(self, what: str, game_exit: GameExit) -> None:
        """The game (child or watched process) is gone: decide the stop, or finish a run whose
        stop already completed."""
        self.game_exit = game_exit
        if self.lifecycle.state is State.TERMINATING:
            return  # the platform is stopping us; the signal path sets the exit code
        how = (
            f"killed by {game_exit.signal_name}"
            if game_exit.signal is not None
            else f"code {game_exit.returncode}"
        )
        log.info("%s exited: %s", what, how)
        self.lifecycle.game_exited(game_exit.exit_code, game_exit.signal_name)
        self.wake()
        if self.lifecycle.state in (State.STOPPED, State.FAILED):
            # The stop finished before the game went away (e.g. match ended, then the game quit).
            await self._after_stop(ok=self.lifecycle.state is State.STOPPED)

    def _game_pids(self) -> list[int]:
        if self.game is not None:
            return self.game.pids()
        if self.watch_pid is not None:
            import psutil

            try:
                root = psutil.Process(self.watch_pid)
                return [root.pid, *(child.pid for child in root.children(recursive=True))]
            except psutil.Error:
                return []
        return []

    async def _port_readiness(self) -> None:
        """Poll the game's sockets until it listens on a game port (SPEC §5), then stop."""
        from sidecar.watchers import find_game_port

        ports = self.deployment.internal_ports
        started = self.clock()
        while self.lifecycle.state is State.STARTING and self.lifecycle.ready_at is None:
            found = await asyncio.to_thread(find_game_port, self._game_pids(), ports)
            if found is not None and self.lifecycle.state is State.STARTING:
                protocol, port = found
                log.info("game is listening on %s port %d: ready", protocol, port)
                self.lifecycle.ready("port")
                self.wake()
                return
            await asyncio.sleep(port_poll_interval(self.clock() - started))

    async def _network_sampler(self) -> None:
        from sidecar.watchers import nic_packets_total

        interval = min(1.0, max(0.1, self.settings.network_idle_timeout / 10))
        while not self.lifecycle.stop_decided and self.lifecycle.state is not State.TERMINATING:
            self.lifecycle.network_sample(nic_packets_total())
            self.wake()
            await asyncio.sleep(interval)

    def game_stats(self) -> GameStats | None:
        """CPU and memory of the game's process tree, sampled at most every STATS_MAX_AGE s."""
        root = self.game.pid if self.game is not None else self.watch_pid
        if root is None or self.game_exit is not None:
            return None
        now = self.clock()
        if now - self._stats_at >= STATS_MAX_AGE:
            from sidecar.watchers import ProcessTreeSampler

            if self._sampler is None:
                self._sampler = ProcessTreeSampler(root)
            self._stats = self._sampler.sample()
            self._stats_at = now
        return self._stats

    # --- signals -------------------------------------------------------------------------------
    def on_terminate_signal(self, sig: int) -> None:
        try:
            self._on_terminate_signal(sig)
        except Exception:
            # A signal must never be swallowed: whatever failed, the game still gets it and the
            # sidecar still finishes (SPEC §11).
            log.exception("handling signal %d failed; forwarding it and exiting", sig)
            self._forward_signal(sig)
            if self.game is None:
                self.finish(0 if self.game_exit is None else self.game_exit.exit_code)

    def _on_terminate_signal(self, sig: int) -> None:
        name = signal.Signals(sig).name
        self._signals_seen.append(sig)
        if self.lifecycle.state is State.TERMINATING:
            if sig == signal.SIGINT and self._signals_seen.count(signal.SIGINT) >= 2:
                log.warning("second SIGINT: forcing exit")
                if self.game is not None:
                    self.game.send_signal(signal.SIGKILL)
                self.finish(130)
            return
        # Queued, never awaited or written here: a signal handler must not block on a stalled
        # stdout, nor raise on a broken one, or the signal would never reach the game.
        submit_record({"event": "sidecar.terminate", "signal": name})
        log.info("%s received: the platform is stopping the deployment", name)
        self.lifecycle.terminating(name)
        if self._stop_task is not None and not self._stop_task.done():
            self._stop_task.cancel()  # the deployment is stopping anyway
        if self.game is not None:
            self._spawn(self._terminate_game(sig), "terminate-game")
        else:
            self.finish(0 if self.game_exit is None else self.game_exit.exit_code)

    async def _terminate_game(self, sig: int) -> None:
        assert self.game is not None
        game_exit = await self.game.terminate(self.settings.term_grace, sig)
        self.game_exit = game_exit
        self.finish(game_exit.exit_code)

    def _forward_signal(self, sig: int) -> None:
        if self.game is not None:
            self.game.send_signal(sig)

    # --- status and metrics --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        lc = self.lifecycle
        decision = lc.decision
        progress = self.stop_progress
        status: dict[str, Any] = {
            "state": lc.state.value,
            "stop_reason": decision.reason.value if decision else None,
            "stop_detail": decision.detail if decision else None,
            "players": {"count": lc.player_count, "ids": lc.player_ids},
            "players_peak": lc.players_peak,
            "timers": {name: round(left, 3) for name, left in lc.timers_left().items()},
            "uptime_s": round(lc.uptime(), 3),
            "ready_source": lc.ready_source,
            "match_id": lc.match_id,
            "dry_run": self.dry_run,
            "stop": {
                "attempts": progress.attempts,
                "last_error": progress.last_error,
                "last_status": progress.last_status,
                "outcome": progress.outcome,
                "log_storage": progress.log_storage,
            },
            "deployment": self.deployment.summary(),
        }
        drain = lc.drain_deadline_in()
        if drain is not None:
            status["drain_deadline_s"] = round(drain, 3)
            status["drain_deadline_unix"] = round(time.time() + drain, 3)
        if self.game is not None or self.watch_pid is not None:
            stats = self.game_stats()
            status["game"] = {
                "pid": self.game.pid if self.game is not None else self.watch_pid,
                "running": self.game_exit is None,
                "exit_code": self.game_exit.exit_code if self.game_exit else None,
                "cpu_percent": stats.cpu_percent if stats else None,
                "rss_bytes": stats.rss_bytes if stats else None,
            }
        if self._secrets:
            # Belt and braces: nothing in status is built from a secret, but an error text from
            # the platform could echo one back.
            progress_error = status["stop"]["last_error"]
            if progress_error:
                status["stop"]["last_error"] = redact(progress_error, self._secrets)
        return status

    def status_body(self) -> bytes:
        key = (self._status_version, int(self.clock() * 1000))
        cached = self._status_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        body = json.dumps(self.status(), separators=(",", ":")).encode()
        self._status_cache = (key, body)
        return body

    def render_metrics(self) -> bytes:
        lc = self.lifecycle
        page = Exposition()
        page.family("info", "gauge", "Sidecar version.", [({"version": __version__}, 1)])
        page.family(
            "state",
            "gauge",
            "1 for the current lifecycle state.",
            [({"state": s.value}, 1 if lc.state is s else 0) for s in State],
        )
        page.single("players", "gauge", "Connected players.", lc.player_count)
        page.single("players_peak", "gauge", "Most players connected at once.", lc.players_peak)
        page.single("uptime_seconds", "gauge", "Seconds since the sidecar started.", lc.uptime())
        page.single("dry_run", "gauge", "1 when self-stop calls are only logged.", self.dry_run)
        page.family(
            "timer_seconds_left",
            "gauge",
            "Seconds left on each armed timer.",
            [({"timer": name}, left) for name, left in lc.timers_left().items()],
        )
        decision = lc.decision
        page.family(
            "stop_decided",
            "gauge",
            "1 once a stop is decided, labelled with its reason.",
            [({"reason": decision.reason.value}, 1)] if decision else [],
        )
        page.family(
            "stop_attempts",
            "counter",
            "Self-stop HTTP attempts.",
            [({}, self.stop_progress.attempts)],
        )
        outcome = self.stop_progress.outcome
        page.family(
            "stop_result",
            "gauge",
            "1 for the self-stop outcome (accepted, already_gone, failed, dry_run).",
            [({"result": outcome}, 1)] if outcome else [],
        )
        page.family(
            "http_requests",
            "counter",
            "Local API requests by route, method and status.",
            [
                ({"route": route, "method": method, "status": str(code)}, count)
                for (route, method, code), count in sorted(self.requests.counts.items())
            ],
        )
        stats = self.game_stats() if (self.game or self.watch_pid) else None
        if stats is not None:
            page.single("game_cpu_percent", "gauge", "Game process tree CPU %.", stats.cpu_percent)
            page.single("game_rss_bytes", "gauge", "Game process tree RSS.", stats.rss_bytes)
        return page.render()

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
            self.finish(1)

    async def close(self) -> None:
        """Shut down in order, each step bounded."""
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (
                signal.SIGTERM,
                signal.SIGINT,
                signal.SIGHUP,
                signal.SIGUSR1,
                signal.SIGUSR2,
            ):
                loop.remove_signal_handler(sig)
        if self.game is not None and self.game_exit is None:
            with contextlib.suppress(TimeoutError):
                self.game_exit = await asyncio.wait_for(
                    self.game.terminate(self.settings.term_grace),
                    self.settings.term_grace + SHUTDOWN_STEP_TIMEOUT,
                )
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_STEP_TIMEOUT)
        self.events.close()  # ends SSE streams so the runner's cleanup does not wait on them
        if self.agones is not None:
            await self.agones.close()  # ends its watch streams, then stops serving
            self.agones = None
        if self._runner is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._runner.cleanup(), SHUTDOWN_STEP_TIMEOUT)
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None


def port_poll_interval(waited: float) -> float:
    """The pause between two port scans after `waited` seconds without a game port: 0.5 s for
    the first 10 s, then a twentieth of the time waited so far, at most 5 s."""
    if waited < PORT_POLL_SLOWDOWN_AFTER:
        return PORT_POLL_INTERVAL
    return min(PORT_POLL_MAX_INTERVAL, max(PORT_POLL_INTERVAL, waited / 20))


# Re-exported for the CLI and tests that name timers.
__all__ = ["TIMER_NAMES", "Agent"]
