"""``smsgw send|status|dlq`` against the running API (``main(argv)`` in a worker thread)."""

from __future__ import annotations

import io
import json
from typing import Any

import trio

from smsgw.client_cli import ExitCode, main
from smsgw.simulator import Faults

from .harness import ADMIN_KEY, READ_KEY, SEND_KEY, Api, wait_status


async def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with trio.fail_after(30):
        code = await trio.to_thread.run_sync(
            lambda: main(list(argv), stdin=io.StringIO(stdin), stdout=out, stderr=err)
        )
    return code, out.getvalue(), err.getvalue()


async def test_send_then_status(api: Api) -> None:
    code, out, _ = await run(
        "send", "--url", api.url, "--key", SEND_KEY, "--to", "+4915112345678",
        "--from", "ACME", "--text", "from the shell", "--client-ref", "cli-1", "--tag", "a",
    )  # fmt: skip
    assert code == ExitCode.OK
    accepted = json.loads(out)
    assert accepted["status"] == "queued" and accepted["parts"] == 1
    async with api.client(SEND_KEY) as client:
        await wait_status(client, accepted["id"], "delivered")
    code, out, _ = await run("status", "--url", api.url, "--key", SEND_KEY, accepted["id"])
    assert code == ExitCode.OK
    view = json.loads(out)
    assert view["status"] == "delivered" and view["client_ref"] == "cli-1"


async def test_send_reads_stdin_and_is_idempotent(api: Api) -> None:
    argv = ("send", "--url", api.url, "--key", SEND_KEY, "--to", "+4915112345678",
            "--from", "ACME", "--idempotency-key", "cli-k")  # fmt: skip
    first = await run(*argv, stdin="line one\n")
    second = await run(*argv, stdin="line one\n")
    assert first[0] == second[0] == ExitCode.OK
    assert json.loads(first[1])["id"] == json.loads(second[1])["id"]
    assert api.gateway.stats().accepted == 1


async def test_exit_codes(api: Api) -> None:
    send = ("send", "--url", api.url, "--to", "+4915112345678", "--from", "ACME", "--text", "x")
    code, _, err = await run(*send, "--key", "wrong")
    assert code == ExitCode.NOPERM and "unauthorized" in err
    code, _, _ = await run(*send, "--key", READ_KEY)
    assert code == ExitCode.NOPERM
    code, _, err = await run(*send, "--key", SEND_KEY, "--encoding", "morse")
    assert code == ExitCode.DATAERR and "encoding" in json.loads(err)["fields"]
    code, _, _ = await run("status", "--url", api.url, "--key", READ_KEY, "nope")
    assert code == ExitCode.NOT_FOUND
    code, _, err = await run("status", "--url", "http://127.0.0.1:1", "--key", READ_KEY, "x")
    assert code == ExitCode.UNAVAILABLE and "cannot reach" in err
    code, _, err = await run("status", "nope")  # no key anywhere
    assert code == ExitCode.USAGE
    code, _, _ = await run("frobnicate")
    assert code == ExitCode.USAGE
    code, _, _ = await run("send", "--help")
    assert code == ExitCode.OK


async def test_dlq_list_and_replay(api: Api) -> None:
    assert api.sim is not None
    api.sim.set_faults(Faults(permanent_error_fraction=1.0))
    async with api.client(SEND_KEY) as client:
        response = await client.post(
            "/messages", json={"to": "+4915112345678", "from": "ACME", "text": "x"}
        )
        message_id = response.json()["id"]
        await wait_status(client, message_id, "failed")
        listed: dict[str, Any] = {"items": []}
        with trio.fail_after(10):
            while not listed["items"]:
                code, out, _ = await run("dlq", "list", "--url", api.url, "--key", ADMIN_KEY)
                assert code == ExitCode.OK
                listed = json.loads(out)
        assert [item["id"] for item in listed["items"]] == [message_id]
        api.sim.set_faults(Faults())
        code, out, _ = await run("dlq", "replay", "--url", api.url, "--key", ADMIN_KEY, message_id)
        assert code == ExitCode.OK and json.loads(out)["replayed"] is True
        await wait_status(client, message_id, "delivered")
    code, _, _ = await run("dlq", "replay", "--url", api.url, "--key", ADMIN_KEY, message_id)
    assert code == ExitCode.NOT_FOUND
    code, _, _ = await run("dlq", "list", "--url", api.url, "--key", SEND_KEY)
    assert code == ExitCode.NOPERM
