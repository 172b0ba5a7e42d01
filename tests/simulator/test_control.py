"""The HTTP control API, over real TCP with a raw HTTP/1.1 client."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import trio

from smpp_codec import BindTransmitter, CommandStatus, SubmitSm
from smsgw.simulator import SimulatorConfig
from smsgw.simulator.control import ControlApi

from .esme import Running, serve


async def http(port: int, method: str, path: str, body: Any = None,
               raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    request = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n"
               .encode() + data)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        response = b""
        while chunk := await stream.receive_some(65536):
            response += chunk
        await stream.aclose()
    head, _, payload = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(payload)


async def start(nursery: trio.Nursery, config: SimulatorConfig | None = None
                ) -> tuple[Running, int]:
    run = await serve(nursery, config)
    port = await nursery.start(ControlApi(run.sim).serve, "127.0.0.1", 0)
    return run, port


async def test_stats_are_served_as_json(nursery):
    run, port = await start(nursery)
    esme = await run.bound(BindTransmitter)
    await esme.request(SubmitSm(sequence_number=esme.seq(), destination_addr="1"))
    status, stats = await http(port, "GET", "/stats")
    assert status == 200
    assert stats["binds"] == 1
    assert stats["submits_accepted"] == 1
    assert stats["pdus_received"] == {"bind_transmitter": 1, "submit_sm": 1}


async def test_stats_json_has_the_sessions_per_system_id(nursery):
    run, port = await start(nursery, SimulatorConfig(max_binds=1))
    esme = await run.bound(BindTransmitter, "alice")
    refused = await run.esme()
    assert (await refused.bind(BindTransmitter, "alice")).command_status == (
        CommandStatus.ESME_RBINDFAIL
    )
    status, stats = await http(port, "GET", "/stats")
    assert status == 200
    assert (stats["binds"], stats["bind_failures"], stats["binds_over_limit"]) == (1, 1, 1)
    assert stats["sessions_by_account"] == {"alice": 1}
    assert stats["peak_sessions"] == {"alice": 1}
    await esme.aclose()


async def test_faults_are_read_patched_and_replaced(nursery):
    run, port = await start(nursery)
    status, faults = await http(port, "GET", "/faults")
    assert status == 200
    assert faults["throttle_fraction"] == 0
    status, faults = await http(port, "PATCH", "/faults", {"throttle_fraction": 1,
                                                           "latency": "5ms"})
    assert (status, faults["throttle_fraction"], faults["latency"]) == (200, 1, 0.005)
    esme = await run.bound(BindTransmitter)
    resp = await esme.request(SubmitSm(sequence_number=esme.seq(), destination_addr="1"))
    assert resp.command_status == CommandStatus.ESME_RTHROTTLED
    status, faults = await http(port, "PATCH", "/faults", {"garbage_mode": "pdu"})
    assert (faults["throttle_fraction"], faults["garbage_mode"]) == (1, "pdu")
    status, faults = await http(port, "PUT", "/faults", {"tps_limit": 50})
    assert (faults["throttle_fraction"], faults["tps_limit"], faults["latency"]) == (0, 50, 0)
    assert run.sim.faults.tps_limit == 50


async def test_bad_requests_get_clear_errors(nursery):
    run, port = await start(nursery)
    status, body = await http(port, "PATCH", "/faults", {"throttle_fraction": 3})
    assert status == 400
    assert "fraction" in body["error"]
    status, body = await http(port, "PATCH", "/faults", {"no_such_fault": 1})
    assert (status, "no_such_fault" in body["error"]) == (400, True)
    status, body = await http(port, "PATCH", "/faults", raw=b"{not json")
    assert status == 400
    status, body = await http(port, "DELETE", "/stats")
    assert status == 405
    status, body = await http(port, "GET", "/nothing")
    assert status == 404
    status, body = await http(port, "POST", "/mo", {"text": "x"})
    assert status == 400
    assert run.sim.faults.throttle_fraction == 0  # nothing changed


async def test_an_mo_is_sent_through_the_api(nursery):
    run, port = await start(nursery)
    status, body = await http(port, "POST", "/mo",
                              {"source_addr": "1", "destination_addr": "2", "text": "hi"})
    assert status == 409  # nobody to send it to
    esme = await run.bound()

    async def answer() -> None:
        for _ in range(2):
            pdu = await esme.deliver()
            await esme.ack(pdu)

    async with trio.open_nursery() as inner:
        inner.start_soon(answer)
        status, body = await http(port, "POST", "/mo", {
            "source_addr": "1", "destination_addr": "2", "text": "ж" * 100,
            "multipart_mode": "udh16", "system_id": "esme"})
    assert status == 200
    assert body == {"system_id": "esme", "statuses": [0, 0], "ok": True}


async def test_an_mo_spread_over_receivers_and_a_bad_spread_value(nursery):
    run, port = await start(nursery)
    first, second = await run.bound(), await run.bound()
    status, body = await http(port, "POST", "/mo", {
        "source_addr": "1", "destination_addr": "2", "text": "hi", "spread": "yes"})
    assert status == 400 and "spread" in body["error"]

    async with trio.open_nursery() as inner:
        inner.start_soon(partial(ack_one, first))
        inner.start_soon(partial(ack_one, second))
        status, body = await http(port, "POST", "/mo", {
            "source_addr": "1", "destination_addr": "2", "text": "ж" * 100, "spread": True})
    assert status == 200 and body["statuses"] == [0, 0]


async def ack_one(esme) -> None:
    await esme.ack(await esme.deliver())
