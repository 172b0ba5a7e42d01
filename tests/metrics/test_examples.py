"""The Grafana dashboard and the alert rules in examples/ use only metrics the gateway exports,
and the metric tables in docs/metrics.md name exactly those."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from smsgw.metrics import Metrics
from smsgw.model import NotificationState
from smsgw.queue.base import QueueDepth

from .test_metrics import CONFIG, Providers

ROOT = Path(__file__).parent.parent.parent
NAME = re.compile(r"\bsmsgw_[a-z_]+")


class Queue:
    async def depth(self) -> QueueDepth:
        return QueueDepth(ready=1, delayed=0, leased=0, dead=0, ready_by_priority={0: 1})


class Outbox:
    async def notification_counts(self) -> dict[NotificationState, int]:
        return dict.fromkeys(NotificationState, 0)


class Rates:
    def current_rate(self, provider: str) -> float:
        return 10.0


class Cluster:
    instance_count = 2


class Inbound:
    async def multipart_pending(self) -> int:
        return 1


class Database:
    writes_failing = False

    async def probe_write(self) -> None:
        pass


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every family name a fully driven gateway exports (counters without ``_total``)."""
    m = Metrics([p.name for p in CONFIG.providers], process=False)
    m.enquire_link_rtt("alpha", 0.01)
    m.task_restart("processor")
    m.watch(
        providers=Providers(),
        rates=Rates(),
        queue=Queue(),
        outbox=Outbox(),
        cluster=Cluster(),
        inbound=Inbound(),
        database=Database(),
        queue_file=Database(),
    )
    trio.run(m.refresh)
    text = m.render()[0].decode()
    return {family.name for family in text_string_to_metric_families(text)}


def known(name: str, exported: set[str]) -> bool:
    for suffix in ("_total", "_bucket", "_count", "_sum", ""):
        if name.endswith(suffix) and name.removesuffix(suffix) in exported:
            return True
    return False


def test_dashboard_uses_exported_metrics(exported: set[str]) -> None:
    dashboard = json.loads((ROOT / "examples" / "grafana-dashboard.json").read_text())
    used = set(NAME.findall(json.dumps(dashboard)))
    assert used, "the dashboard queries no smsgw metric"
    assert {n for n in used if not known(n, exported)} == set()
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["targets"] and p["datasource"]["uid"] == "${DS_PROMETHEUS}" for p in panels)


def test_alert_rules_use_exported_metrics(exported: set[str]) -> None:
    text = (ROOT / "examples" / "prometheus-alerts.yml").read_text()
    exprs = re.findall(r"expr: (?:\|\n((?:\s{10}.*\n)+)|(.*))", text)
    used = {n for block, line in exprs for n in NAME.findall(block or line)}
    assert len(exprs) == text.count("- alert:")
    assert {n for n in used if not known(n, exported)} == set()


def test_docs_list_every_exported_family(exported: set[str]) -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(smsgw_[a-z_]+)`", text, re.MULTILINE))
    exported_names = {
        name + "_total" if f"{name}_total" in documented else name for name in exported
    }
    families = {n for n in exported_names if n.startswith("smsgw_")}
    assert documented == families
