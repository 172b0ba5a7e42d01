"""The small ASGI layer under the API: a request read with a size limit, JSON responses, a
path router. Hypercorn parses HTTP; this only adapts its ASGI events.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl

import attrs

from smsgw.asgi import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ASGIApp",
    "HttpError",
    "Match",
    "Message",
    "Request",
    "Response",
    "Route",
    "error_response",
    "json_response",
    "match",
    "not_found",
    "read_body",
]


@attrs.frozen
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


class HttpError(Exception):
    """An error answer: ``status``, a short ``code``, a message, and optionally bad fields."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        fields: Mapping[str, str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = dict(fields) if fields else None
        self.retry_after = retry_after

    def response(self) -> Response:
        return error_response(
            self.status, self.code, self.message, fields=self.fields, retry_after=self.retry_after
        )


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def json_response(
    status: int, value: object, *, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, _dumps(value), headers)


def retry_after_header(seconds: float) -> tuple[str, str]:
    """``Retry-After`` in whole seconds, at least 1 (HTTP allows no fractions)."""
    return ("retry-after", str(max(1, math.ceil(seconds))))


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    fields: Mapping[str, str] | None = None,
    retry_after: float | None = None,
) -> Response:
    body: dict[str, object] = {"error": code, "message": message}
    if fields:
        body["fields"] = dict(fields)
    headers = (retry_after_header(retry_after),) if retry_after is not None else ()
    return json_response(status, body, headers=headers)


@attrs.frozen
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names; a repeated header keeps its last value
    query: Mapping[str, str]  # a repeated parameter keeps its last value
    body: bytes
    params: Mapping[str, str] = attrs.field(factory=dict)  # from the path pattern

    def json(self) -> object:
        """The body as JSON; HTTP 400 if it is not."""
        if not self.body:
            raise HttpError(400, "bad_request", "the request needs a JSON body")
        try:
            return json.loads(self.body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise HttpError(400, "bad_request", f"the body is not valid JSON: {exc}") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def headers_of(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers", ())
    }


def query_of(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The whole body, or HTTP 413 as soon as it is known to be longer than ``limit``."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HttpError(413, "too_large", f"the body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(400, "bad_request", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, "too_large", f"the body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_response(send: Send, response: Response) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(response.body)).encode()),
        *((k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers),
    ]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


Handler = Callable[..., Awaitable[Response]]


@attrs.frozen
class Route:
    """``METHOD /path/{name}``: ``{name}`` matches one path segment."""

    method: str
    pattern: str
    handler: Handler
    regex: re.Pattern[str] = attrs.field(init=False)

    @regex.default
    def _compile(self) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", self.pattern)
        regex = "".join(
            f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
        )
        return re.compile(regex)


@attrs.frozen
class Match:
    """What :func:`match` found: ``route`` None means the path exists, for other methods only
    (``allowed``); a path no route has is no :class:`Match` at all."""

    pattern: str
    route: Route | None
    params: dict[str, str]
    allowed: tuple[str, ...] = ()

    def target(self, method: str) -> tuple[Route, dict[str, str]]:
        """The route and its path parameters, or HTTP 405."""
        if self.route is None:
            raise HttpError(
                405,
                "method_not_allowed",
                f"{method} is not allowed here; use {', '.join(self.allowed)}",
            )
        return self.route, self.params


def match(routes: tuple[Route, ...], method: str, path: str) -> Match | None:
    """The route for ``method path`` with its path parameters; for a path that exists for
    other methods only, the pattern and those methods; None for a path no route has."""
    pattern: str | None = None
    allowed: list[str] = []
    for route in routes:
        found = route.regex.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return Match(route.pattern, route, found.groupdict())
        pattern = pattern or route.pattern
        allowed.append(route.method)
    if pattern is None:
        return None
    return Match(pattern, None, {}, tuple(allowed))


def not_found(path: str) -> HttpError:
    return HttpError(404, "not_found", f"no such endpoint: {path}")
