"""Structured logging: text and JSON renderings, context fields, reconfiguration."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from smsgw import logs
from smsgw.config import LogFormat, LogLevel

log = logging.getLogger("smsgw.test")


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """Our handler writing to a buffer; removed afterwards."""
    buffer = io.StringIO()
    yield buffer
    logs.reset()


def _json_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_json_line_has_message_level_logger_and_fields(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, stream=capture)
    log.warning("bound %s", "a", extra={"provider": "acme", "connection": 2})
    [line] = _json_lines(capture)
    assert line["message"] == "bound a"
    assert line["level"] == "warning"
    assert line["logger"] == "smsgw.test"
    assert line["provider"] == "acme"
    assert line["connection"] == 2
    assert isinstance(line["time"], str) and line["time"].endswith("Z")


def test_text_line_has_fields_after_the_message(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.TEXT, stream=capture)
    log.info("ready", extra={"providers": 2, "summary": "2 providers (a, b)"})
    [line] = capture.getvalue().splitlines()
    assert " INFO  smsgw.test: ready providers=2 " in line
    assert line.endswith('summary="2 providers (a, b)"')


def test_level_filters_records(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, level=LogLevel.WARNING, stream=capture)
    log.info("hidden")
    log.error("shown")
    assert [line["message"] for line in _json_lines(capture)] == ["shown"]


def test_exception_is_rendered(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, stream=capture)
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    [line] = _json_lines(capture)
    assert "ValueError: boom" in str(line["exception"])


def test_configure_again_replaces_the_handler(capture: io.StringIO) -> None:
    first = io.StringIO()
    logs.configure(format=LogFormat.TEXT, stream=first)
    logs.configure(format=LogFormat.JSON, stream=capture)
    log.warning("once")
    assert first.getvalue() == ""
    assert [line["message"] for line in _json_lines(capture)] == ["once"]


def test_extra_wins_over_context_and_never_hides_record_keys(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, stream=capture)
    with logs.log_context(provider="ctx", level="ctx-level"):
        log.warning("x", extra={"provider": "extra"})
    [line] = _json_lines(capture)
    assert line["provider"] == "extra"
    assert line["level"] == "warning"


async def test_context_is_inherited_by_spawned_tasks(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, stream=capture)

    async def child() -> None:
        log.warning("from child", extra={"n": 1})

    with logs.log_context(provider="acme"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(child)
    log.warning("outside")
    child_line, outside = _json_lines(capture)
    assert child_line["provider"] == "acme"
    assert child_line["n"] == 1
    assert "provider" not in outside


def test_non_json_values_are_rendered(capture: io.StringIO) -> None:
    logs.configure(format=LogFormat.JSON, stream=capture)
    log.warning("x", extra={"format": LogFormat.JSON, "keys": ("a", "b"), "obj": object()})
    [line] = _json_lines(capture)
    assert line["format"] == "json"
    assert line["keys"] == ["a", "b"]
    assert str(line["obj"]).startswith("<object object")


_field_names = st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(
    lambda k: k not in logs._STANDARD and k not in ("time", "level", "logger", "message")
)
_values = st.one_of(st.text(), st.integers(), st.booleans(), st.none())


@given(fields=st.dictionaries(_field_names, _values, max_size=5), message=st.text())
def test_json_round_trips_any_fields(fields: dict[str, object], message: str) -> None:
    record = logging.LogRecord("smsgw.x", logging.INFO, __file__, 1, "%s", (message,), None)
    record.__dict__.update(fields)
    document = json.loads(logs.JsonFormatter().format(record))
    assert document["message"] == message
    assert {k: document[k] for k in fields} == fields


@given(value=st.text())
def test_text_value_is_bare_or_a_json_string_that_reads_back(value: str) -> None:
    record = logging.LogRecord("smsgw.x", logging.INFO, __file__, 1, "m", None, None)
    record.field = value
    line = logs.TextFormatter().format(record)
    head, _, rendered = line.partition(" field=")
    assert head.endswith("smsgw.x: m")
    if rendered.startswith('"'):
        assert json.loads(rendered) == value
    else:
        assert rendered == value
        assert value.isprintable() and not any(c in value for c in ' ="\\')
