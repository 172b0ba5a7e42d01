"""A tiny HTTP/1.1 control API for a running simulator (stdlib ``json`` + Trio only).

=======  ============  ============================================================
method   path          what it does
=======  ============  ============================================================
GET      /stats        the current :class:`Stats` as JSON
GET      /faults       the faults in force
PUT      /faults       replace the faults (fields left out are off)
PATCH    /faults       change only the given fault fields
POST     /mo           send an MO: ``{"source_addr", "destination_addr", "text",
                       "encoding", "multipart_mode", "system_id", "timeout"}``;
                       answers ``{"system_id", "statuses", "ok"}``
=======  ============  ============================================================

One request per connection (``Connection: close``), bodies of at most 64 KiB, every read
bounded by a timeout. Errors are JSON too: ``{"error": "..."}`` with 400 (bad input), 404,
405, 409 (no receiver bound for an MO) or 413. Meant for a trusted operator or test harness on
loopback: there is no authentication.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from smpp_codec.errors import TextError

from .config import faults_from_mapping
from .faults import Faults
from .server import NoReceiverError, Simulator
from .values import ConfigError

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
#: Seconds a client has to send its whole request.
READ_TIMEOUT = 10.0

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict", 413: "Content Too Large", 500: "Internal Server Error"}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _plain(value: Any) -> Any:
    """attrs values -> JSON-able values."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def faults_json(faults: Faults) -> dict[str, Any]:
    return {a.name: _plain(getattr(faults, a.name)) for a in attrs.fields(Faults)}


class ControlApi:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    async def serve(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; reports the port through ``task_status.started``."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._connection, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            try:
                with trio.fail_after(READ_TIMEOUT):
                    method, path, body = await _read_request(stream)
                status, payload = await self.dispatch(method, path, body)
            except HttpError as exc:
                status, payload = exc.status, {"error": str(exc)}
            except trio.TooSlowError:
                status, payload = 400, {"error": "request not received in time"}
            data = json.dumps(payload, indent=1).encode() + b"\n"
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            with trio.move_on_after(READ_TIMEOUT):
                await stream.send_all(head + data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def dispatch(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        path = path.split("?", 1)[0].rstrip("/") or "/"
        sim = self.sim
        if path == "/stats":
            _allow(method, "GET")
            return 200, _plain(attrs.asdict(sim.stats, recurse=False))
        if path == "/faults":
            _allow(method, "GET", "PUT", "PATCH")
            if method != "GET":
                fields = _json_object(body)
                base = sim.faults if method == "PATCH" else Faults()
                try:
                    sim.set_faults(faults_from_mapping(fields, base))
                except ConfigError as exc:
                    raise HttpError(400, str(exc)) from None
            return 200, faults_json(sim.faults)
        if path == "/mo":
            _allow(method, "POST")
            return 200, await self._mo(_json_object(body))
        raise HttpError(404, f"no such resource {path!r}: /stats, /faults, /mo")

    async def _mo(self, fields: dict[str, Any]) -> dict[str, Any]:
        known = {"source_addr", "destination_addr", "text", "encoding", "multipart_mode",
                 "system_id", "timeout", "spread"}
        unknown = set(fields) - known
        missing = {"source_addr", "destination_addr", "text"} - set(fields)
        if unknown or missing:
            raise HttpError(
                400, f"an MO needs source_addr, destination_addr, text; unknown {sorted(unknown)}, "
                f"missing {sorted(missing)}"
            )
        try:
            result = await self.sim.send_mo(
                source_addr=str(fields["source_addr"]),
                destination_addr=str(fields["destination_addr"]),
                text=str(fields["text"]),
                encoding=fields.get("encoding"),
                multipart_mode=fields.get("multipart_mode", "udh8"),
                system_id=fields.get("system_id"),
                timeout=float(fields.get("timeout", 10.0)),
                spread=_flag(fields.get("spread", False)),
            )
        except NoReceiverError as exc:
            raise HttpError(409, str(exc)) from None
        except (ConfigError, TextError, ValueError, TypeError) as exc:
            raise HttpError(400, str(exc)) from None
        return {"system_id": result.system_id, "statuses": list(result.statuses), "ok": result.ok}


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"spread: expected true or false, got {value!r}")
    return value


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise HttpError(405, f"{method} not allowed here; use {', '.join(allowed)}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise HttpError(400, f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise HttpError(400, "body must be a JSON object")
    return value


async def _read_request(stream: trio.abc.ReceiveStream) -> tuple[str, str, bytes]:
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise HttpError(413, "request head too large")
        data = await stream.receive_some(4096)
        if not data:
            raise HttpError(400, "connection closed before the request was complete")
        buffer += data
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, f"bad request line {lines[0]!r}")
    method, path = parts[0].upper(), parts[1]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            try:
                length = int(value.strip())
            except ValueError:
                raise HttpError(400, "bad Content-Length") from None
        elif name.strip().lower() == "transfer-encoding":
            raise HttpError(400, "send a Content-Length, not chunked data")
    if not 0 <= length <= MAX_BODY:
        raise HttpError(413, f"body of {length} octets; at most {MAX_BODY}")
    body = bytearray(rest)
    while len(body) < length:
        data = await stream.receive_some(length - len(body))
        if not data:
            raise HttpError(400, "connection closed inside the body")
        body += data
    return method, path, bytes(body[:length])
