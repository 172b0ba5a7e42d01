"""``smsgw run``: the gateway as a long-running service.

The root of the nursery tree (docs/architecture.md): ``trio.run`` -> signal receiver ->
trio-asyncio loop (the SQLite and Redis adapters run their asyncio libraries on it) -> one
nursery holding the :class:`~smsgw.gateway.Gateway` and the signal handler.

Signals
    - SIGTERM / SIGINT: graceful stop. The gateway drains (stops leasing, lets in-flight
      submissions finish within ``[gateway] drain_grace``, unbinds, flushes the database) and the
      process exits 0. The whole stop is bounded by ``drain_grace`` + :data:`STOP_MARGIN`.
    - A second SIGTERM / SIGINT during the drain: stop at once (cancel everything); exit
      ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM), like a shell reports a process
      killed by that signal. Nothing acknowledged is lost: unfinished leases return to the queue
      after ``queue.visibility_timeout``.
    - SIGHUP: reload the configuration file. A file with problems is logged with every problem
      and the running configuration is kept. Sections that only take effect at start
      (:data:`RESTART_ONLY`) keep their running values, with a warning naming each changed key.

Listeners
    The HTTP API (``[api]``) and, with ``[metrics] port`` set, a metrics listener of its own
    (otherwise ``/metrics`` is on the API listener) run beside the gateway and stop once it has
    drained, so status reads keep working during a drain.

systemd (``Type=notify``, :mod:`smsgw.sdnotify`)
    ``READY=1`` once storage, queue and the listeners are up; ``STOPPING=1`` when a drain
    starts; ``RELOADING=1`` then ``READY=1`` around a SIGHUP reload; ``WATCHDOG=1`` at half of
    ``WatchdogSec`` from the main loop while the process runs.

Exit codes (the ``sysexits.h`` values service managers and scripts understand) are
:class:`ExitCode`; docs/operations.md has the table.
"""

from __future__ import annotations

import argparse
import enum
import functools
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import __version__, logs
from .adapters.sqlite import DatabaseError, DatabaseUnavailable
from .check_config import advice, print_ok, summary
from .config import ConfigError, GatewayConfig, LogFormat, LogLevel, load_config
from .errors import SetupError, lone
from .queue.base import QueueUnavailable
from .sdnotify import SystemdNotifier, watchdog_pings
from .storage.errors import SchemaError, StoreUnavailable

if TYPE_CHECKING:
    from .gateway import Gateway

log = logging.getLogger("smsgw.daemon")

DEFAULT_CONFIG = "gateway.toml"

#: Beyond ``drain_grace``, how long unbinding and the last database flush may take before the
#: stop is forced (and reported as a failure: something did not honour its timeout).
STOP_MARGIN = 15.0
#: The longest a SIGHUP reload may take (adding, removing, restarting provider pools).
RELOAD_TIMEOUT = 120.0
#: Reading the configuration file (a local file: anything slower is a broken disk).
READ_TIMEOUT = 10.0


class ExitCode(enum.IntEnum):
    """What ``smsgw run`` exits with. A second stop signal gives ``128 + signal number``."""

    #: Stopped by SIGTERM/SIGINT after a graceful drain (or ``--check`` found no problem).
    OK = 0
    #: Bad command line (``argparse``).
    USAGE = 2
    #: A resource the gateway needs cannot be used: the state directory or database file cannot
    #: be created or opened, the database is corrupt. Retrying will not help until fixed.
    UNAVAILABLE = 69
    #: A bug: an unexpected exception escaped the nursery tree, or the stop overran its bound.
    SOFTWARE = 70
    #: A resource is unavailable for now (Redis unreachable, database locked beyond its busy
    #: timeout): a service manager should restart the gateway later.
    TEMPFAIL = 75
    #: The configuration file is missing, unreadable or has problems (each is logged).
    CONFIG = 78


def forced_exit_code(signum: int) -> int:
    """The exit code of a stop forced by a second ``signum``: 128 + signal number."""
    return 128 + signum


# --- pure decisions -------------------------------------------------------------------------


#: Least to most severe: in a group, the most severe decides (a bug outranks an outage).
_SEVERITY = (
    ExitCode.OK,
    ExitCode.TEMPFAIL,
    ExitCode.UNAVAILABLE,
    ExitCode.CONFIG,
    ExitCode.SOFTWARE,
)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code for an exception that ended the gateway (groups: the most severe)."""
    if isinstance(exc, BaseExceptionGroup):
        codes = [exit_code_for(inner) for inner in exc.exceptions]
        return max(codes, key=_SEVERITY.index)
    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, QueueUnavailable | DatabaseUnavailable | StoreUnavailable):
        return ExitCode.TEMPFAIL
    if isinstance(exc, SchemaError | DatabaseError | OSError):
        return ExitCode.UNAVAILABLE
    return ExitCode.SOFTWARE


def describe_error(exc: BaseException) -> str:
    """What went wrong, in one line: the message of each exception at the leaves of the group
    ``exc`` (a lone one as is), with its type when that says something the message does not."""
    leaves: list[BaseException] = []

    def collect(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                collect(inner)
        else:
            leaves.append(error)

    collect(exc)
    parts = []
    for leaf in leaves:
        text = str(leaf) or type(leaf).__name__
        parts.append(text if isinstance(leaf, SetupError) else f"{type(leaf).__name__}: {text}")
    return "; ".join(dict.fromkeys(parts))


class ListenError(SetupError):
    """A listener (API, metrics) could not be opened: the message names the address and the
    configuration keys."""


#: What a reload cannot change in a running gateway: storage, queue backend, listeners,
#: identity. Paths in ``section.key`` form (a bare section: the whole section). The rest of
#: ``[api]`` (keys, their scopes and limits, request limits) is taken live.
RESTART_ONLY = (
    "gateway.state_dir",
    "gateway.instance_id",
    "queue",
    "database",
    "api.listen",
    "api.port",
    "api.max_connections",
    "api.idempotency_window",
    "metrics",
    "inbound.max_pending",
)


def _changed_paths(path: str, old: Any, new: Any) -> list[str]:
    """The leaf keys under ``path`` that differ between two attrs values."""
    if old == new:
        return []
    if attrs.has(type(old)) and type(old) is type(new):
        changed = []
        for field in attrs.fields(type(old)):
            changed += _changed_paths(
                f"{path}.{field.name}", getattr(old, field.name), getattr(new, field.name)
            )
        return changed or [path]
    return [path]


def plan_reload(running: GatewayConfig, loaded: GatewayConfig) -> tuple[GatewayConfig, list[str]]:
    """The configuration to apply on reload, and the changed keys that need a restart.

    The result is ``loaded`` with every :data:`RESTART_ONLY` part kept at its running value,
    so the gateway (and anyone reading its configuration) sees what is really in force.
    """
    ignored: list[str] = []
    for key in RESTART_ONLY:
        section, _, field = key.partition(".")
        old = getattr(running, section)
        new = getattr(loaded, section)
        if field:
            old, new = getattr(old, field), getattr(new, field)
        ignored += _changed_paths(key, old, new)
    gateway = attrs.evolve(
        loaded.gateway,
        state_dir=running.gateway.state_dir,
        instance_id=running.gateway.instance_id,
    )
    api = attrs.evolve(
        loaded.api,
        listen=running.api.listen,
        port=running.api.port,
        max_connections=running.api.max_connections,
        idempotency_window=running.api.idempotency_window,
    )
    effective = attrs.evolve(
        loaded,
        gateway=gateway,
        queue=running.queue,
        database=running.database,
        api=api,
        metrics=running.metrics,
        inbound=attrs.evolve(loaded.inbound, max_pending=running.inbound.max_pending),
    )
    return effective, ignored


@attrs.frozen
class LogOverrides:
    """``--log-format`` / ``--log-level`` given on the command line win over the file."""

    format: LogFormat | None = None
    level: LogLevel | None = None

    def apply(self, config: GatewayConfig | None) -> None:
        section = config.gateway if config is not None else None
        logs.configure(
            format=self.format or (section.log_format if section else LogFormat.TEXT),
            level=self.level or (section.log_level if section else LogLevel.INFO),
        )


def log_config_error(exc: ConfigError, *, action: str) -> None:
    log.error(
        "%s: %s",
        action,
        exc,
        extra={"config": exc.source, "problems": list(exc.messages)},
    )


# --- the service ----------------------------------------------------------------------------


class Daemon:
    """One run of the gateway, from start to the exit code. See the module docstring."""

    def __init__(
        self, config_path: str, config: GatewayConfig, overrides: LogOverrides | None = None
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.overrides = overrides or LogOverrides()
        self.gateway: Gateway | None = None
        #: Set once a stop signal was received; the second one forces the stop.
        self.stopping = False
        #: The signal number of a forced stop.
        self.forced: int | None = None
        self._run_scope: trio.CancelScope | None = None
        self._reload_lock = trio.Lock()
        self.notify = SystemdNotifier.from_environ()
        #: The port the HTTP API listens on, once it does.
        self.api_port: int | None = None

    async def run(self) -> int:
        """Serve until stopped; the process exit code."""
        import trio_asyncio

        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        code: int = ExitCode.OK
        with trio.open_signal_receiver(*signals) as receiver:
            try:
                async with trio_asyncio.open_loop(), trio.open_nursery() as nursery:
                    nursery.start_soon(self._handle_signals, receiver, nursery)
                    code = await self._run_gateway()
                    nursery.cancel_scope.cancel()
            except Exception as exc:  # the exception groups out of the nursery tree
                code = exit_code_for(exc)
                reason = describe_error(exc)
                # A bug gets its traceback; a resource the gateway cannot use (a port in use, a
                # directory it cannot create, an unavailable database) gets one line saying so.
                log.critical(
                    "the gateway stopped on an error: %s",
                    reason,
                    exc_info=exc if code is ExitCode.SOFTWARE else None,
                    extra={"exit_code": int(code)},
                )
        if self.forced is not None:
            code = forced_exit_code(self.forced)
        stats = attrs.asdict(self.gateway.stats()) if self.gateway is not None else None
        log.info("stopped", extra={"exit_code": int(code), "stats": stats})
        return code

    async def _run_gateway(self) -> int:
        from .gateway import Gateway

        gateway = Gateway(self.config)
        stopped = trio.Event()

        async def run_gateway(task_status: trio.TaskStatus[Gateway]) -> None:
            try:
                await gateway.run(task_status=task_status)
            finally:
                stopped.set()

        with trio.CancelScope() as scope:
            self._run_scope = scope
            async with trio.open_nursery() as nursery:
                self.gateway = await nursery.start(run_gateway)
                # The listeners (and the watchdog) live until the gateway has drained.
                async with trio.open_nursery() as listeners:
                    listeners.start_soon(watchdog_pings, self.notify)
                    addresses = await self._start_listeners(listeners, gateway)
                    config = self.config
                    log.info(
                        "gateway ready",
                        extra={
                            "version": __version__,
                            "pid": os.getpid(),
                            "config": self.config_path,
                            "summary": summary(config),
                            "instance": config.gateway.resolved_instance_id(),
                            **addresses,
                        },
                    )
                    self.notify.ready(f"running: {summary(config)}")
                    await stopped.wait()
                    listeners.cancel_scope.cancel()
        if scope.cancelled_caught:
            if self.forced is not None:
                log.warning(
                    "stop forced: in-flight messages return to the queue after the "
                    "visibility timeout"
                )
                return forced_exit_code(self.forced)
            if self.gateway is None:
                log.info("stopped before the gateway was ready")
                return ExitCode.OK
            log.error(
                "the drain overran its bound; stop forced",
                extra={"bound": self.config.gateway.drain_grace + STOP_MARGIN},
            )
            return ExitCode.SOFTWARE
        if not self.stopping:
            log.error("the gateway stopped without being asked to")
            return ExitCode.SOFTWARE
        return ExitCode.OK

    async def _start_listeners(self, nursery: trio.Nursery, gateway: Gateway) -> dict[str, str]:
        """Start the HTTP API and the metrics (on the API listener or their own) in ``nursery``;
        their URLs for the log."""
        from .api.server import serve_api
        from .metrics import metrics_app, serve_metrics

        config = self.config
        m = config.metrics
        urls: dict[str, str] = {}
        # Any: the metrics app's ASGI types are a little wider than the API's (both are ASGI).
        routes: dict[str, Any] = {}
        if m.enabled and not m.on_api_listener:
            assert m.port is not None
            serve: Callable[..., Awaitable[None]] = functools.partial(
                serve_metrics, gateway.metrics, m.listen, m.port, path=m.path
            )
            binds: list[str] = await _listening(
                nursery, serve, f"the metrics on {m.listen}:{m.port} ([metrics] listen, port)"
            )
            urls["metrics"] = binds[0] + m.path
        elif m.enabled:
            routes[m.path] = metrics_app(gateway.metrics, path=m.path)
        self.api_port = await _listening(
            nursery,
            functools.partial(serve_api, gateway, config, extra_routes=routes),
            f"the API on {config.api.listen}:{config.api.port} ([api] listen, port)",
        )
        host = config.api.listen
        api = f"http://{f'[{host}]' if ':' in host else host}:{self.api_port}"
        urls["api"] = api
        if routes:
            urls["metrics"] = api + m.path
        return urls

    async def _handle_signals(self, receiver: AsyncIterator[int], nursery: trio.Nursery) -> None:
        async for signum in receiver:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                if self.stopping:
                    log.warning("SIGHUP ignored: stopping")
                else:
                    nursery.start_soon(self.reload)
            elif not self.stopping:
                self.stopping = True
                nursery.start_soon(self._stop, name)
            else:
                log.warning("%s again: stopping now", name)
                self.forced = signum
                if self._run_scope is not None:
                    self._run_scope.cancel()

    async def _stop(self, reason: str) -> None:
        scope = self._run_scope
        if scope is None:  # pragma: no cover - the scope exists before signals are handled
            return
        grace = self.config.gateway.drain_grace
        scope.deadline = trio.current_time() + grace + STOP_MARGIN
        self.notify.stopping(f"{reason}: draining")
        if self.gateway is None:
            log.info("%s: stopping (the gateway was not ready yet)", reason)
            scope.cancel()
            return
        log.info("%s: draining", reason, extra={"grace": grace})
        await self.gateway.drain(grace)

    async def reload(self) -> None:
        """SIGHUP: load the file again and apply it; keep the running config on any problem."""
        async with self._reload_lock:
            if self.gateway is None:
                log.warning("SIGHUP ignored: the gateway is not ready yet")
                return
            log.info("SIGHUP: reloading", extra={"config": self.config_path})
            self.notify.reloading()
            try:
                await self._reload(self.gateway)
            finally:
                # Reloaded or not, the service runs (on the configuration it reports).
                self.notify.ready(f"running: {summary(self.config)}")

    async def _reload(self, gateway: Gateway) -> None:
        """Load the file again and apply it; on any problem the running configuration stays."""
        try:
            with trio.fail_after(READ_TIMEOUT):
                loaded = await trio.to_thread.run_sync(
                    load_config, self.config_path, abandon_on_cancel=True
                )
        except ConfigError as exc:
            log_config_error(exc, action="reload refused, the running configuration stays")
            return
        except trio.TooSlowError:
            log.error("reload refused: reading the file took over %gs", READ_TIMEOUT)
            return
        effective, ignored = plan_reload(self.config, loaded)
        if ignored:
            log.warning(
                "these changes take effect at the next restart",
                extra={"keys": ignored},
            )
        try:
            with trio.fail_after(RELOAD_TIMEOUT):
                await gateway.reload(effective)
        except trio.TooSlowError:
            if gateway.config is not effective:
                log.error("reload did not finish within %gs", RELOAD_TIMEOUT)
                return
            # Only the connections' replacement is still under way (the provider manager's
            # own work, which goes on): everything else is in force.
            log.warning(
                "reload: connections still being replaced after %gs; they go on in the "
                "background, the rest of the configuration is in force",
                RELOAD_TIMEOUT,
            )
        except Exception:  # a reload failing must not take the running gateway down
            log.exception("reload failed; the gateway keeps what it applied")
            return
        if gateway.webhooks is not None:
            gateway.webhooks.reconfigure(effective.webhooks)
        gateway.notifier.inbound_target = effective.webhooks.inbound_url
        gateway.notifier.statuses = (
            None if effective.webhooks.statuses is None else frozenset(effective.webhooks.statuses)
        )
        known = {p.name for p in self.config.providers}
        for provider in effective.providers:
            if provider.name not in known:
                gateway.metrics.add_provider(provider.name)
        self.config = effective
        self.overrides.apply(effective)
        log.info("reloaded", extra={"summary": summary(effective)})


# --- command line ---------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgw run",
        description=(
            "Run the gateway. SIGTERM/SIGINT drain and stop (a second one stops at once); "
            "SIGHUP reloads the configuration. Exit codes: docs/operations.md."
        ),
    )
    parser.add_argument(
        "-c", "--config", default=DEFAULT_CONFIG, help=f"configuration file ({DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--check", action="store_true", help="check the configuration and exit (0 or 78)"
    )
    parser.add_argument(
        "--log-format", choices=[f.value for f in LogFormat], help="overrides gateway.log_format"
    )
    parser.add_argument(
        "--log-level", choices=[lv.value for lv in LogLevel], help="overrides gateway.log_level"
    )
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    # Until the signal receiver is in place, a SIGHUP would kill the process (its default
    # action): a reload asked for before the gateway runs is ignored instead.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    args = _parser().parse_args(None if argv is None else list(argv))
    overrides = LogOverrides(
        format=LogFormat(args.log_format) if args.log_format else None,
        level=LogLevel(args.log_level) if args.log_level else None,
    )
    overrides.apply(None)
    path: str = args.config
    try:
        config = load_config(path)
    except ConfigError as exc:
        log_config_error(exc, action="cannot start")
        return ExitCode.CONFIG
    if args.check:
        print_ok(path, config)
        return ExitCode.OK
    overrides.apply(config)
    log.info(
        "starting",
        extra={"version": __version__, "pid": os.getpid(), "config": str(Path(path))},
    )
    for note in advice(config):
        log.warning(note)
    try:
        return trio.run(Daemon(path, config, overrides).run)
    except KeyboardInterrupt:  # SIGINT before the signal receiver was in place
        return forced_exit_code(signal.SIGINT)


async def _listening(
    nursery: trio.Nursery, serve: Callable[..., Awaitable[None]], what: str
) -> Any:
    """``nursery.start(serve)``; a socket error while opening it (the address is in use, or not
    this host's) is a :class:`ListenError` naming ``what``."""
    try:
        return await nursery.start(serve)
    except Exception as exc:  # a socket error is told apart; anything else is re-raised
        error = lone(exc)  # out of the nurseries between here and the socket
        if not isinstance(error, OSError):
            raise
        raise ListenError(f"cannot serve {what}: {error.strerror or error}") from exc


if __name__ == "__main__":
    sys.exit(main())
