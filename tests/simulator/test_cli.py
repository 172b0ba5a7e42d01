"""``smsgw simulator`` as a user runs it: a subprocess, real TCP, SIGINT."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from smpp_codec import BindTransceiver, SubmitSm, Unbind
from smsgw.simulator import Faults, IdFormat, ReceiptIdForm
from smsgw.simulator.cli import _mapping, build_parser, main
from smsgw.simulator.config import config_from_mapping, read_config_file

from .esme import RawEsme

EXAMPLE = Path(__file__).parents[2] / "examples" / "simulator.toml"


class Lines:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def until(self, pattern: str) -> re.Match[str]:
        with trio.fail_after(20):
            while True:
                while b"\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\n", 1)
                    text = line.decode()
                    self.seen.append(text)
                    match = re.search(pattern, text)
                    if match:
                        return match
                data = await self.stream.receive_some(4096)
                if not data:
                    raise AssertionError(f"no line matching {pattern!r} in {self.seen}")
                self.buffer += data


async def test_the_cli_serves_reports_stats_and_stops_cleanly_on_sigint():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "smsgw", "simulator", "--port", "0", "--seed", "3",
               "--account", "cli:pw", "--id-format", "decimal", "--receipt-delay", "10ms",
               "--stats-interval", "200ms"]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout is not None
        lines = Lines(process.stdout)
        match = await lines.until(r"listening on 127\.0\.0\.1:(\d+)")
        port = int(match.group(1))
        esme = await RawEsme.connect(port)
        bind = await esme.request(BindTransceiver(sequence_number=1, system_id="cli",
                                                  password="pw"))
        assert bind.command_status == 0
        resp = await esme.request(SubmitSm(sequence_number=2, source_addr="1",
                                           destination_addr="2", registered_delivery=1))
        assert resp.command_status == 0
        assert resp.message_id.isdigit()
        receipt = await esme.deliver()
        assert receipt.tlv("receipted_message_id") == resp.message_id
        await esme.ack(receipt)
        await lines.until(r"^stats: .*submits=1/0 receipts=1/1")
        process.send_signal(signal.SIGINT)
        # Stopping, the simulator unbinds the session first; answered, the connection closes.
        unbind = await esme.next()
        assert isinstance(unbind, Unbind)
        await esme.send(unbind.response())
        assert await esme.until_closed() == []
        final = await lines.until(r"^final stats: (.*)")
        assert "binds=1/0" in final.group(1)
        assert "submits=1/0" in final.group(1)
        with trio.fail_after(20):
            assert await process.wait() == 0
        assert any(line.startswith("stopping (SIGINT)") for line in lines.seen)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def test_bad_options_exit_2_with_a_clear_message(capsys):
    assert main(["--throttle", "2"]) == 2
    assert "a fraction must be in 0..1" in capsys.readouterr().err
    assert main(["--receipt-mix", "DELIVERED=1"]) == 2
    assert "unknown receipt outcome" in capsys.readouterr().err
    assert main(["--config", "/does/not/exist.toml"]) == 2
    assert "cannot read config" in capsys.readouterr().err


def test_a_port_in_use_exits_1(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--receipt-delay", "--receipt-mix", "--throttle", "--account", "--garbage-mode",
                 "--control-port", "--stats-interval", "Ctrl-C"):
        assert flag in out


def test_every_config_field_has_a_flag():
    import attrs

    from smsgw.simulator import ReceiptConfig, SimulatorConfig

    parser = build_parser()
    dests = {a.dest for a in parser._actions}
    top = {a.name for a in attrs.fields(SimulatorConfig)} - {"receipts", "faults"}
    receipts = {f"receipts.{a.name}" for a in attrs.fields(ReceiptConfig)} - {
        "receipts.text", "receipts.tlvs"}  # both set by --receipt-form
    faults = {f"faults.{a.name}" for a in attrs.fields(Faults)}
    assert top | receipts | faults <= dests
    assert "receipt_form" in dests


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "sim.toml"
    path.write_text(
        'port = 2775\nid_format = "decimal"\n[receipts]\ndelay = "5s"\n'
        '[faults]\nthrottle_fraction = 0.5\n'
    )
    args = build_parser().parse_args(
        ["--config", str(path), "--receipt-delay", "1s", "--latency", "20ms",
         "--receipt-form", "tlv", "--account", "a:b", "--account", "c:d",
         "--receipt-id-form", "hex"]
    )
    config = config_from_mapping(_mapping(args, read_config_file(path)))
    assert config.port == 2775
    assert config.id_format is IdFormat.DECIMAL
    assert config.receipts.delay == 1.0
    assert (config.receipts.text, config.receipts.tlvs) == (False, True)
    assert config.receipts.id_form is ReceiptIdForm.HEX
    assert config.faults.throttle_fraction == 0.5
    assert config.faults.latency == 0.02
    assert [a.system_id for a in config.accounts] == ["a", "c"]


def test_max_binds_comes_from_the_flag_or_the_config_file(tmp_path):
    path = tmp_path / "sim.toml"
    path.write_text("max_binds = 4\n")
    from_file = build_parser().parse_args(["--config", str(path)])
    assert config_from_mapping(_mapping(from_file, read_config_file(path))).max_binds == 4
    flagged = build_parser().parse_args(["--config", str(path), "--max-binds", "2"])
    assert config_from_mapping(_mapping(flagged, read_config_file(path))).max_binds == 2
    assert config_from_mapping(_mapping(build_parser().parse_args([]), {})).max_binds is None


def test_a_bad_max_binds_exits_2_naming_it(capsys):
    assert main(["--max-binds", "0"]) == 2
    assert "max_binds" in capsys.readouterr().err


def test_the_example_config_loads():
    config = config_from_mapping(read_config_file(EXAMPLE))
    assert config.port == 2775
    assert config.accounts
    assert (config.mo_attempts, config.mo_retry_delay) == (5, 10.0)
