"""The crash test of inbound messages: two ``smsgw run`` instances on one real Redis, an SMSC
(the simulator, served by this test) sending multipart MOs with each part on the next session of
the account, so the parts of one message reach both instances; one instance killed with SIGKILL
mid-traffic, then started again.

The simulator keeps each part until it is answered ESME_ROK (``mo_attempts``), sending it again
to a bound session of the account, as an SMSC does. Then every MO is stored exactly once, whole,
in one of the two databases: a part the SMSC had an answer for was in Redis (the parts of
messages being put together), and a message claimed by the killed instance is stored when it
is back, once (the claim keeps its id).
"""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio

from smsgw.config import load_config
from smsgw.simulator import Simulator, SimulatorConfig
from smsgw.simulator.mo import MoResult

from .harness import DaemonProcess, poll, provider_toml, write_config

pytestmark = pytest.mark.slow

COUNT = 300
KILL_AFTER = 100
SENDERS = 20


def _config_text(tmp_path: Path, name: str, port: int, redis_url: str, prefix: str) -> str:
    return f"""
[gateway]
state_dir = "{(tmp_path / name).as_posix()}"
instance_id = "{name}"
drain_grace = "5s"

[api]
port = 0

[queue]
backend = "redis"

[queue.redis]
url = "{redis_url}"
prefix = "{prefix}"
""" + provider_toml("smsc", port, connections=2)


def _inbound(config: Path) -> list[tuple[str, int, int]]:
    """(text, complete, parts) of each inbound row, read beside the running gateway."""
    path = load_config(config).database_path
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.OperationalError:
        return []
    try:
        return list(conn.execute("SELECT text, complete, part_count FROM inbound"))
    except sqlite3.OperationalError:
        return []  # no table yet
    finally:
        conn.close()


async def test_sigkill_of_an_instance_mid_mo_traffic_loses_and_doubles_nothing(
    tmp_path: Path, redis_server: Any
) -> None:
    texts = [f"crash test {n:05d} " + "mo " * 110 for n in range(COUNT)]  # 3 parts, any mode
    results: list[MoResult] = []
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            sim = Simulator(
                SimulatorConfig(seed=5, response_timeout=2, mo_attempts=20, mo_retry_delay=0.5)
            )
            port = await nursery.start(sim.serve)
            configs = [
                write_config(
                    tmp_path / f"{name}.toml",
                    _config_text(tmp_path, name, port, redis_server.url, f"crash{tmp_path.name}"),
                )
                for name in ("a", "b")
            ]
            a = await nursery.start(DaemonProcess(configs[0]).run)
            await poll(lambda: sim.stats.sessions == 2, 30, "a bound")
            b = await nursery.start(DaemonProcess(configs[1]).run)
            # "a" gives one of the account's two connections to "b".
            await poll(lambda: sim.stats.binds >= 3 and sim.stats.sessions == 2, 30, "b bound")

            queue = list(enumerate(texts))

            async def sender() -> None:
                while queue:
                    n, text = queue.pop()
                    results.append(
                        await sim.send_mo(
                            source_addr=f"4917{n:06d}",
                            destination_addr="1234",
                            text=text,
                            multipart_mode=("udh8", "udh16", "sar")[n % 3],
                            spread=True,
                            timeout=100,
                        )
                    )

            async with trio.open_nursery() as senders:
                for _ in range(SENDERS):
                    senders.start_soon(sender)
                await poll(lambda: len(results) >= KILL_AFTER, 60, "MO traffic")
                a.kill()
                assert await a.wait_exit(30) == -signal.SIGKILL
                at_kill = len(results)
                assert at_kill < COUNT, "the traffic was over before the kill: raise COUNT"
                a = await nursery.start(DaemonProcess(configs[0]).run)
            await poll(
                lambda: sum(len(_inbound(c)) for c in configs) >= COUNT, 60, "every MO stored"
            )
            await trio.sleep(1.0)  # a second chance for a duplicate to show
            for daemon in (a, b):
                daemon.signal(signal.SIGTERM)
            for daemon in (a, b):
                assert await daemon.wait_exit(60) == 0
            nursery.cancel_scope.cancel()

    assert all(r.ok for r in results), [r for r in results if not r.ok][:3]
    rows = [row for c in configs for row in _inbound(c)]
    stored = Counter(text for text, _complete, _parts in rows)
    assert stored == Counter(texts)  # each once: none lost, none doubled
    assert {(complete, parts) for _text, complete, parts in rows} == {(1, 3)}
    by_instance = [len(_inbound(c)) for c in configs]
    stats = sim.stats
    print(
        f"MO crash test: killed after {at_kill} of {COUNT} MOs; stored by a/b {by_instance}; "
        f"{stats.mos_retried} parts sent again, {stats.mos_sent} sent in all"
    )
