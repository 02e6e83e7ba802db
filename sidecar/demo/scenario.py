"""The demo scenario: drives a deployment from `POST /deployments` to Status.TERMINATED (with
--match, two matchmaker matches in turn, matches.py).

`Demo.run()` is the whole walk under the --timeout cap. Every failure becomes a `DemoError`
naming the step it happened in. The emulator, its HTTP API, the sidecar's event stream and the
bots are all real; the only thing this module adds is the waiting and the printing.

Over 400 lines on purpose: the walk reads top to bottom in the order the demo prints it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiohttp

from sidecar.demo.bots import play_bots
from sidecar.demo.example import (
    LOOPBACK,
    ExampleGame,
    backing_command,
    deployment_env,
    describe_game,
    find_example_game,
    load_run_bots,
)
from sidecar.demo.matches import (
    MatchPlan,
    arrive,
    delivered_result,
    deploy_match,
    no_show_match,
    played_match,
)
from sidecar.demo.options import DemoOptions
from sidecar.demo.reading import (
    self_stop_call,
    sse_events,
    stop_record,
    stored_logs,
    winner_label,
)
from sidecar.demo.timeline import Timeline, describe_result, describe_sidecar
from sidecar.emulator import EmulatorError, EmulatorOptions, EmulatorServer, Status
from sidecar.emulator.environment import pick_free_port
from sidecar.emulator.server import signal_handlers
from sidecar.errors import DemoError, UsageError

APP_NAME = "demo-game"

# Short enough that the walk takes about a second, long enough that polling GET /v1/status
# every STATUS_POLL_SECONDS sees each status (a missed one is recovered from `last_status`).
STATUS_STEP_SECONDS = 0.15
STATUS_POLL_SECONDS = 0.05
SSE_RETRY_SECONDS = 0.1
# The emulator's SIGTERM → SIGKILL grace must outlast the sidecar's own (SIDECAR_TERM_GRACE),
# so the sidecar gets to forward the signal and see the game exit cleanly.
EMULATOR_STOP_GRACE_SECONDS = 5.0
# Log lines shown before the sidecar.stop record: the game's match-end lines give it context.
LOG_CONTEXT_LINES = 3


# ---- the scenario -------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoSummary:
    """What a successful run reports in its last line."""

    request_id: str
    elapsed: float
    stop_reason: str
    log_lines: int
    # demo --match: the result reached the emulator's result sink, once.
    result_delivered: bool = False
    # demo --match: the deployments played before this one, in order.
    earlier: tuple[DemoSummary, ...] = ()


class Demo:
    """Runs the scenario once. Background watchers (deployment status, sidecar events, the bots)
    are created by `_watch`, owned in `_tasks`, and cancelled and awaited in `_stop_watchers`.
    The main flow waits on conditions over what they saw; each change wakes it through
    `_changed`, and a watcher's failure becomes the failure of the step being waited on."""

    def __init__(self, options: DemoOptions, timeline: Timeline) -> None:
        self.options = options
        self.timeline = timeline
        self.step = "starting"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()
        self.reached: list[Status] = []
        self.deployment: dict[str, Any] = {}
        self.sidecar_states: list[str] = []
        self.sidecar_status: dict[str, Any] = {}
        self.bots_outcome: dict[str, Any] | None = None
        self.expected_reason = "match_ended"
        self._deadline: asyncio.Timeout | None = None

    async def run(self) -> DemoSummary:
        """The whole scenario under the --timeout cap; every failure is a DemoError.

        SIGTERM cancels the run like SIGINT does, so the emulator's cleanup still stops the
        deployment's processes (they run in sessions of their own and would outlive us)."""
        main = asyncio.current_task()
        terminated = False

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            if main is not None:
                main.cancel()

        try:
            with signal_handlers((signal.SIGTERM,), on_sigterm):
                return await self._run_capped()
        except asyncio.CancelledError:
            if not terminated:
                raise
            raise DemoError(self.step, "interrupted by SIGTERM") from None

    async def _run_capped(self) -> DemoSummary:
        deadline = self._deadline = asyncio.timeout(self.options.timeout)
        try:
            async with deadline:
                return await self._run()
        except TimeoutError as exc:
            if deadline.expired():
                message = f"timed out after {self.options.timeout:g}s (raise it with --timeout)"
                raise DemoError(self.step, message) from None
            raise DemoError(self.step, f"timed out: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise DemoError(self.step, f"{type(exc).__name__}: {exc}") from None
        except EmulatorError as exc:
            raise DemoError(self.step, str(exc)) from None

    async def _run(self) -> DemoSummary:
        self.step = "locating the example game"
        try:
            game = find_example_game(self.options.agones, self.options.grpc)
            self.expected_reason = game.stop_reason
            run_bots = load_run_bots(game.bots)
        except (ImportError, FileNotFoundError, UsageError) as exc:
            raise DemoError(self.step, str(exc)) from None
        self.step = "starting the emulator"
        options = EmulatorOptions(
            host=LOOPBACK,
            port=0,
            api_token=secrets.token_hex(16),
            apps={APP_NAME: backing_command(game)},
            # The platform's default. A sidecar that dies at start-up is caught from crash_data
            # (and its last output line shown) long before the restart delay comes round.
            restart_policy="always",
            status_step_seconds=STATUS_STEP_SECONDS,
            stop_grace_seconds=EMULATOR_STOP_GRACE_SECONDS,
            game_port=0,
            # demo --match: where its sidecars deliver the match results.
            result_sink=self.options.match,
        )
        async with EmulatorServer(options) as emulator, aiohttp.ClientSession() as session:
            self.timeline.event("emulator", f"Edgegap API emulator on {emulator.url}")
            # The token is this run's own, made up above: showing it exposes nothing else.
            dashboard = f"{emulator.url}/_emulator/ui#token={options.api_token}"
            self.timeline.event("emulator", f"dashboard: {dashboard}")
            self.timeline.event("emulator", f"app {APP_NAME}: {describe_game(game)}")
            if game.agones:
                self.timeline.event("emulator", f"the game talks {game.sdk_wire}")
            try:
                if self.options.match:
                    played = await self._play(
                        emulator, session, game, run_bots, played_match(self.options.players)
                    )
                    await self._reset()
                    plan = no_show_match(self.options.players)
                    last = await self._play(emulator, session, game, run_bots, plan)
                    summary = dataclasses.replace(last, earlier=(played,))
                else:
                    summary = await self._play(emulator, session, game, run_bots)
            finally:
                await self._stop_watchers()
            if self.options.keep:
                await self._keep_up(dashboard)
            return summary

    async def _keep_up(self, dashboard: str) -> None:
        """--keep: the emulator stays up, past --timeout, until SIGINT or SIGTERM, so the
        finished deployment can be looked at on the dashboard; then the demo ends as usual."""
        self.step = "keeping the emulator up (--keep)"
        if self._deadline is not None:
            self._deadline.reschedule(None)
        stop = asyncio.Event()
        with signal_handlers((signal.SIGINT, signal.SIGTERM), stop.set):
            # Printed even with --quiet: it is the reason the command has not returned. (After
            # the handlers: a script may signal as soon as it reads this line.)
            print(
                f"edgegap-sidecar demo: done; the emulator stays up (--keep): {dashboard} "
                "- Ctrl-C to end it",
                flush=True,
            )
            await stop.wait()

    async def _play(
        self,
        emulator: EmulatorServer,
        session: aiohttp.ClientSession,
        game: ExampleGame,
        run_bots: Callable[..., dict[str, Any]],
        plan: MatchPlan | None = None,
    ) -> DemoSummary:
        self.step = f"deploying {APP_NAME} (POST /deployments)"
        sidecar_port = pick_free_port(LOOPBACK)
        api_token = secrets.token_hex(16)
        env = deployment_env(game, sidecar_port, api_token)
        variables = [
            {"key": key, "value": value, "is_hidden": key == "SIDECAR_API_TOKEN"}
            for key, value in env.items()
        ]
        made = None
        if plan is not None:
            self.step = f"making the {plan.name} match (POST /_emulator/matches)"
            self.expected_reason = plan.stop_reason
            made = await deploy_match(emulator, plan, APP_NAME, variables, self.timeline)
            request_id = made.request_id
        else:
            request_id = await emulator.deploy(APP_NAME, environment_variables=variables)
            self.timeline.event("emulator", f"POST /deployments -> request_id {request_id}")
        self._watch("deployment status watch", self._follow_status(emulator, request_id))

        self.step = "waiting for Status.READY"
        await self._wait_for(
            lambda: Status.READY in self.reached or Status.ERROR in self.reached,
            "deployment status watch",
        )
        if Status.ERROR in self.reached:
            detail = self.deployment.get("error_detail")
            raise DemoError(self.step, f"the deployment went to Status.ERROR: {detail}")
        game_port = self._game_port()

        self.step = f"connecting to the sidecar's event stream on {LOOPBACK}:{sidecar_port}"
        sidecar_url = f"http://{LOOPBACK}:{sidecar_port}"
        self._watch(
            "sidecar event stream",
            self._follow_sidecar(session, sidecar_url, api_token, emulator, request_id),
        )
        await self._wait_for(lambda: bool(self.sidecar_states), "sidecar event stream")
        self.step = "waiting for the game to report ready"
        await self._wait_for(lambda: self.sidecar_states[-1] != "starting", "sidecar event stream")

        if plan is None or made is None:
            await self._play_bots(run_bots, game_port)
            return await self._after_stop(emulator, request_id)

        self.step = "players arriving with their tickets"
        tickets = made.ticket_ids
        # The example bots call themselves bot-1, bot-2…: their tickets arrive under those
        # names. In the no-show match the last ticket's player never comes.
        arriving = tickets if plan.played else tickets[:-1]
        await arrive(
            session,
            sidecar_url,
            api_token,
            [(f"bot-{n}", ticket) for n, ticket in enumerate(arriving, start=1)],
            self.timeline,
            self.step,
        )
        if plan.played:
            await self._play_bots(run_bots, game_port)
        else:
            self.timeline.event("players", f"ticket {tickets[-1]} never shows up")
            self.step = f"waiting for the no-show deadline ({plan.no_show_timeout})"
            await self._wait_for(
                lambda: self.sidecar_status.get("stop_reason") is not None, "sidecar event stream"
            )
        summary = await self._after_stop(emulator, request_id)
        self.step = "reading the result sink (GET /_emulator/results)"
        self.timeline.event("sink", await delivered_result(emulator, made, self.step))
        return dataclasses.replace(summary, result_delivered=True)

    async def _play_bots(self, run_bots: Callable[..., dict[str, Any]], game_port: int) -> None:
        self.step = (
            f"playing the match ({self.options.players} players x {self.options.rounds} rounds "
            f"on udp {LOOPBACK}:{game_port})"
        )
        self._watch("bots", self._play_match(run_bots, game_port))
        await self._wait_for(lambda: self.bots_outcome is not None, "bots")

        self.step = "waiting for the game to end the match"
        await self._wait_for(
            lambda: self.sidecar_status.get("stop_reason") is not None, "sidecar event stream"
        )
        self._check_stop_reason()

    async def _after_stop(self, emulator: EmulatorServer, request_id: str) -> DemoSummary:
        self.step = "waiting for the sidecar's self-stop"
        # The emulator's TERMINATING is the proof the stop was accepted: the sidecar itself may
        # never show `stopped`, because the platform's SIGTERM can beat the 200 to it.
        await self._wait_for(
            lambda: "failed" in self.sidecar_states or Status.TERMINATING in self.reached,
            "deployment status watch",
        )
        if "failed" in self.sidecar_states:
            error = (self.sidecar_status.get("stop") or {}).get("last_error")
            raise DemoError(self.step, f"the self-stop failed: {error}")
        call = await self_stop_call(emulator, request_id)
        if call is None:
            raise DemoError(self.step, "the deployment is terminating without a self-stop call")
        self.timeline.event("emulator", f"accepted the self-stop: {call}")

        self.step = "waiting for Status.TERMINATED"
        await self._wait_for(lambda: Status.TERMINATED in self.reached, "deployment status watch")

        self.step = "reading the stored container logs"
        lines = await stored_logs(emulator, request_id, self.step)
        found = stop_record(lines)
        if found is None:
            raise DemoError(self.step, "the stored container logs have no sidecar.stop record")
        index, record = found
        label = winner_label(lines)
        if label is not None:
            self.timeline.event(
                "game", f"labelled its GameServer winner={label}, then called Shutdown() (its log)"
            )
        self.timeline.event("result", describe_result(record))
        shown = lines[max(0, index - LOG_CONTEXT_LINES) :]
        self.timeline.line(
            f"stored container logs of {request_id} (kept by container_log_storage=true), "
            f"last {len(shown)} of {len(lines)} lines:"
        )
        for line in shown:
            self.timeline.line(f"  | {line}")
        return DemoSummary(
            request_id, self.timeline.elapsed(), str(record.get("reason")), len(lines)
        )

    # ---- waiting ------------------------------------------------------------------------------

    def _notify(self) -> None:
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.set()
        self._changed = asyncio.Event()

    def _watch(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro, name=f"demo-{name}")
        task.add_done_callback(lambda _: self._notify())
        self._tasks[name] = task

    async def _wait_for(self, condition: Callable[[], bool], source: str) -> None:
        """Wait until `condition()` holds; fail at once when a watcher failed or when `source`,
        the watcher whose observations the condition reads, has ended without it holding."""
        while True:
            self._check_stop_reason()
            if condition():
                return
            for task in self._tasks.values():
                if task.done() and not task.cancelled() and task.exception() is not None:
                    task.result()
            if self._tasks[source].done():
                sidecar_state = self.sidecar_states[-1] if self.sidecar_states else "not reached"
                status = self.reached[-1] if self.reached else "unknown"
                raise DemoError(
                    self.step,
                    f"the {source} ended first (sidecar {sidecar_state}, deployment {status})",
                )
            await self._changed.wait()

    def _check_stop_reason(self) -> None:
        """Fail as soon as the sidecar decides to stop for anything but the match's end: a
        timer or a crash means the scenario went wrong, whatever step it is in."""
        reason = self.sidecar_status.get("stop_reason")
        if reason not in (None, self.expected_reason):
            detail = self.sidecar_status.get("stop_detail")
            raise DemoError(
                self.step,
                f"the sidecar is stopping for {reason} ({detail}), not {self.expected_reason}",
            )

    async def _reset(self) -> None:
        """Between two deployments (demo --match): nothing watched or seen carries over."""
        await self._stop_watchers()
        self._tasks.clear()
        self.reached = []
        self.deployment = {}
        self.sidecar_states = []
        self.sidecar_status = {}
        self.bots_outcome = None

    async def _stop_watchers(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        # Watchers only await HTTP calls and the bots' future, so cancellation is prompt.
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- watchers -----------------------------------------------------------------------------

    async def _follow_status(self, emulator: EmulatorServer, request_id: str) -> None:
        """Poll `GET /v1/status/{id}` as a platform client would, printing each new status."""
        while True:
            code, body = await emulator.call("GET", f"/v1/status/{request_id}")
            if code != 200 or not isinstance(body, dict):
                raise DemoError(self.step, f"GET /v1/status/{request_id} answered {code}: {body}")
            self.deployment = body
            current = Status(body["current_status"])
            if current not in self.reached:
                last = body.get("last_status")
                if last is not None and Status(last) not in self.reached:
                    # Passed between two polls: still part of the walk the user should see.
                    self._reached(Status(last), body)
                self._reached(current, body)
                self._notify()
            if current is Status.TERMINATED:
                return
            await asyncio.sleep(STATUS_POLL_SECONDS)

    def _reached(self, status: Status, body: dict[str, Any]) -> None:
        self.reached.append(status)
        note = ""
        if status is Status.READY:
            note = f"  (game port {self._port_text(body)})"
        elif status is Status.ERROR:
            note = f"  ({body.get('error_detail')})"
        self.timeline.event("emulator", f"{status}{note}")

    def _port_text(self, body: dict[str, Any]) -> str:
        ports = body.get("ports") or {}
        return ", ".join(
            f"{port.get('protocol', '').lower()} {LOOPBACK}:{port.get('internal')}"
            for port in ports.values()
        )

    def _game_port(self) -> int:
        """The internal UDP port the game binds, from the deployment's ports mapping.

        On Edgegap players reach the external port through the platform's proxy; locally
        nothing forwards it, so the bots go straight to the internal port on loopback."""
        for port in (self.deployment.get("ports") or {}).values():
            if "UDP" in str(port.get("protocol", "")).upper():
                return int(port["internal"])
        raise DemoError(
            self.step, f"the deployment has no UDP port: {self.deployment.get('ports')}"
        )

    async def _follow_sidecar(
        self,
        session: aiohttp.ClientSession,
        url: str,
        api_token: str,
        emulator: EmulatorServer,
        request_id: str,
    ) -> None:
        """Follow `GET /v1/events`, retrying until the sidecar serves; ends with the stream."""
        headers = {"Authorization": f"Bearer {api_token}", "Accept": "text/event-stream"}
        # The stream stays open for the whole match: no total timeout, only for connecting.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=2.0)
        while True:
            try:
                async with session.get(
                    f"{url}/v1/events", headers=headers, timeout=timeout
                ) as response:
                    if response.status != 200:
                        answer = f"{response.status}: {await response.text()}"
                        raise DemoError(self.step, f"GET /v1/events answered {answer}")
                    async for event, data in sse_events(response.content):
                        if event == "state":
                            self._on_sidecar_status(data)
                return
            except aiohttp.ClientError:
                if self.sidecar_states:
                    return  # the sidecar went away mid-stream: it exits after the stop
            # Not serving yet. If its process already exited, waiting longer cannot help.
            await self._check_not_exited(emulator, request_id)
            await asyncio.sleep(SSE_RETRY_SECONDS)

    async def _check_not_exited(self, emulator: EmulatorServer, request_id: str) -> None:
        if Status.TERMINATED in self.reached:
            raise DemoError(self.step, "the deployment terminated before its sidecar served")
        code, body = await emulator.call("GET", f"/v1/deployment/{request_id}/container-logs")
        if code != 200 or not isinstance(body, dict):
            return
        exit_code = (body.get("crash_data") or {}).get("exit_code")
        if exit_code is not None:
            output = str(body.get("logs") or "").strip().splitlines()
            last = output[-1] if output else "(no output)"
            raise DemoError(self.step, f"the sidecar exited with code {exit_code}: {last}")

    def _on_sidecar_status(self, status: dict[str, Any]) -> None:
        self.sidecar_status = status
        state = str(status.get("state"))
        if not self.sidecar_states or self.sidecar_states[-1] != state:
            self.sidecar_states.append(state)
            self.timeline.event("sidecar", describe_sidecar(status))
        self._notify()

    async def _play_match(self, run_bots: Callable[..., dict[str, Any]], port: int) -> None:
        try:
            self.bots_outcome = await play_bots(
                run_bots, port, self.options.players, self.options.rounds, self.timeline
            )
        except Exception as exc:
            # BotError lives in a module loaded by path, so it has no importable name here;
            # whatever the bots raised, the match could not be played.
            raise DemoError(self.step, f"{type(exc).__name__}: {exc}") from None
        self._notify()
