"""The client API as an ASGI application (``/api/v1``; docs/api.md and docs/openapi.yaml).

Every request goes: route -> authenticate (401) -> scope (403) -> per-key rate limit (429) ->
body read with the size limit (413) -> handler. Handlers turn gateway errors into answers:
a full queue or an unavailable queue/database is 503 with ``Retry-After``, bad input 400/422
naming each field. Anything else is a bug: logged with its traceback, answered 500 without
details.

``/healthz`` and ``/readyz`` need no key (load balancers and service managers probe them) and
say nothing but yes/no per check. ``extra_routes`` mounts other ASGI apps at exact paths (the
Prometheus exposition at ``/metrics``), outside the API's authentication.

Every answered request is counted in the gateway's metrics (``smsgw_api_requests_total`` and
``smsgw_api_request_duration_seconds``) under its route's *template*, or ``unmatched``: a raw
path would make a label value of every message id.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import trio

from smpp_codec.errors import TextError
from smpp_codec.segment import SplitMode, count
from smsgw.adapters.sqlite import DatabaseError
from smsgw.asgi import ASGIApp, Message, Receive, Scope, Send, lifespan
from smsgw.config import ApiConfig, ApiKeyConfig, ApiScope
from smsgw.gateway import Gateway, GatewayBusy, GatewayError, GatewayNotRunning
from smsgw.messages import Accepted, SubmitRequest
from smsgw.metrics import UNMATCHED_ROUTE, Metrics
from smsgw.model import MessageStatus
from smsgw.queue.base import QueueError
from smsgw.storage import InvalidCursor, MessageFilter, StoreError

from . import views
from .auth import Authenticator, key_from_headers
from .coalesce import Coalescer
from .http import (
    HttpError,
    Match,
    Request,
    Response,
    Route,
    error_response,
    headers_of,
    json_response,
    match,
    not_found,
    query_of,
    read_body,
    send_response,
)
from .idempotency import Idempotency, KeyInProgress, KeyReused, fingerprint
from .ratelimit import KeyLimiter, Limiter
from .validation import Invalid, parse_preview, parse_submit, parse_time

__all__ = ["PREFIX", "ApiApp"]

log = logging.getLogger("smsgw.api")

PREFIX = "/api/v1"
#: Retry-After for a full queue, and for a queue or database that is down.
BUSY_RETRY = 1.0
UNAVAILABLE_RETRY = 5.0
#: Batch items with a client_ref submitted at once (each is its own idempotent submission).
REF_CONCURRENCY = 16
#: Dead letters listed at most per page.
MAX_DLQ_PAGE = 500


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise HttpError(
            422,
            "invalid",
            f"{name} must be an integer {low}..{high}",
            fields={name: f"must be an integer {low}..{high}, got {raw!r}"},
        )
    return int(raw)


def _unavailable(exc: GatewayError | StoreError | QueueError) -> HttpError:
    if isinstance(exc, GatewayBusy):
        return HttpError(503, "busy", f"the gateway is busy: {exc}", retry_after=BUSY_RETRY)
    return HttpError(
        503,
        "unavailable",
        f"the gateway cannot take this now: {exc}",
        retry_after=UNAVAILABLE_RETRY,
    )


@attrs.frozen
class _Result:
    """One item's answer in a submission: HTTP status and JSON."""

    status: int
    body: dict[str, Any]

    def text(self) -> str:
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":"))


class ApiApp:
    """The ASGI callable. ``idempotency`` is the open store of remembered answers,
    ``coalescer`` (running) submits single messages. Its settings are the gateway's
    ``[api]``, read at each request: a reload (``Gateway.reload``) changes the keys and the
    request limits at once."""

    def __init__(
        self,
        gateway: Gateway,
        idempotency: Idempotency,
        coalescer: Coalescer,
        *,
        extra_routes: Mapping[str, ASGIApp] | None = None,
        limiter: Limiter | None = None,
    ) -> None:
        self.gateway = gateway
        self.coalescer = coalescer
        self.idempotency = idempotency
        self.extra_routes = dict(extra_routes or {})
        #: The keys the authenticator was made for, and it (remade when a reload changes them).
        self._auth: tuple[tuple[ApiKeyConfig, ...], Authenticator] | None = None
        #: Per-key rate limits: this process's own count unless given (shared in Redis).
        self.limiter: Limiter = limiter if limiter is not None else KeyLimiter()
        # (method, path, handler, scope needed; None: no key needed)
        table: list[tuple[str, str, Any, ApiScope | None]] = [
            ("POST", "/messages", self.post_message, ApiScope.SEND),
            ("POST", "/messages/batch", self.post_batch, ApiScope.SEND),
            ("POST", "/messages/preview", self.post_preview, ApiScope.SEND),
            ("GET", "/messages", self.list_messages, ApiScope.READ),
            ("GET", "/messages/{id}", self.get_message, ApiScope.READ),
            ("GET", "/inbound", self.list_inbound, ApiScope.READ),
            ("GET", "/dead-letters", self.list_dead_letters, ApiScope.ADMIN),
            ("POST", "/dead-letters/{id}/replay", self.replay, ApiScope.ADMIN),
            ("GET", "/providers", self.providers, ApiScope.READ),
            ("GET", "/healthz", self.healthz, None),
            ("GET", "/readyz", self.readyz, None),
        ]
        self.routes = tuple(Route(m, PREFIX + p, h) for m, p, h, _ in table)
        self.scopes = {(m, PREFIX + p): s for m, p, _, s in table}

    @property
    def config(self) -> ApiConfig:
        """``[api]`` in force (the gateway's, reloads included)."""
        return self.gateway.config.api

    @property
    def auth(self) -> Authenticator:
        """The configured keys in force."""
        keys = self.gateway.config.api.keys
        if self._auth is None or self._auth[0] is not keys:
            self._auth = (keys, Authenticator(keys))
        return self._auth[1]

    @property
    def metrics(self) -> Metrics:
        """Where answered requests are counted: the gateway's metrics."""
        return self.gateway.metrics

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # nothing else is served (websockets, for one)
        started = trio.current_time()
        method, path = scope["method"], scope["path"]
        extra = self.extra_routes.get(path)
        if extra is not None:
            status = await _status_of(extra, scope, receive, send)
            self.metrics.api_request(path, method, status, trio.current_time() - started)
            return
        found = match(self.routes, method, path)
        body_read = False

        async def tracked() -> Message:
            nonlocal body_read
            message = await receive()
            body_read = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            if found is None:
                raise not_found(path)
            response = await self._handle(scope, found, tracked)
        except HttpError as exc:
            response = exc.response()
        except Exception:
            log.exception("API %s %s failed", method, path)
            response = error_response(500, "internal", "internal error (logged)")
        # Answered before the whole body arrived (401, 413...): the rest of it would be read as
        # the next request. Or the gateway is draining (SIGTERM): clients and proxies should
        # open their next connection elsewhere. Either way this connection ends here.
        unread = not body_read and method not in ("GET", "HEAD")
        if unread or not self.gateway.accepting:
            response = attrs.evolve(response, headers=(*response.headers, ("connection", "close")))
        await send_response(send, response)
        # The route's template, never the raw path: the label set stays bounded.
        route = UNMATCHED_ROUTE if found is None else found.pattern
        self.metrics.api_request(route, method, response.status, trio.current_time() - started)

    async def _handle(self, scope: Scope, found: Match, receive: Receive) -> Response:
        method, path = scope["method"], scope["path"]
        route, params = found.target(method)
        headers = headers_of(scope)
        needed = self.scopes[(method, route.pattern)]
        key: ApiKeyConfig | None = None
        if needed is not None:
            key = self.auth.authenticate(key_from_headers(headers))
            if key is None:
                raise HttpError(
                    401,
                    "unauthorized",
                    "a valid API key is needed (Authorization: Bearer KEY or X-API-Key: KEY)",
                )
            if not self.auth.allows(key, needed):
                raise HttpError(403, "forbidden", f"this key lacks the {needed.value!r} scope")
            wait = await self.limiter.wait_time(key, trio.current_time())
            if wait > 0:
                raise HttpError(
                    429, "rate_limited", "too many requests for this key", retry_after=wait
                )
        body = await read_body(receive, headers, self.config.max_body_size)
        request = Request(method, path, headers, query_of(scope), body, params)
        try:
            response: Response = await route.handler(request, key)
        except KeyInProgress as exc:
            raise HttpError(409, "in_progress", str(exc), retry_after=1.0) from None
        except DatabaseError as exc:  # the idempotency table's connection
            raise HttpError(
                503,
                "unavailable",
                f"the database is unavailable: {exc}",
                retry_after=UNAVAILABLE_RETRY,
            ) from None
        except (GatewayError, StoreError, QueueError) as exc:
            if isinstance(exc, InvalidCursor):
                raise HttpError(422, "invalid", "bad cursor", fields={"cursor": str(exc)}) from None
            raise _unavailable(exc) from None
        return response

    # -- submitting ------------------------------------------------------------------------

    def _parse(self, body: object, key: ApiKeyConfig) -> SubmitRequest:
        return parse_submit(
            body,
            client=key.name,
            max_parts=self.config.max_parts,
            default_callback=key.callback_url,
        )

    async def _submit_one(self, request: SubmitRequest) -> _Result:
        result = await self.coalescer.submit(request)
        if isinstance(result, Accepted):
            return _Result(202, views.accepted(result))
        return _Result(
            422,
            {
                "error": "invalid",
                "message": "the message is invalid",
                "fields": views.rejected(result)["errors"],
            },
        )

    async def _submit_ref(self, key: ApiKeyConfig, request: SubmitRequest) -> _Result:
        """Submit once per (client, client_ref) within the idempotency window."""
        assert request.client_ref is not None

        async def work() -> tuple[int, str]:
            try:
                result = await self._submit_one(request)
            except (GatewayError, StoreError, QueueError) as exc:
                raise _unavailable(exc) from None  # not remembered: a retry submits again
            return result.status, result.text()

        outcome = await self.idempotency.run(key.name, "ref:" + request.client_ref, None, work)
        return _Result(outcome.status, json.loads(outcome.body))

    async def _idempotent(self, request: Request, key: ApiKeyConfig, work: Any) -> Response:
        """``work()`` once per ``Idempotency-Key`` (if the request has one)."""
        idem = request.headers.get("idempotency-key")
        if idem is None:
            result: _Result = await work()
            return json_response(result.status, result.body)
        if not (0 < len(idem) <= 255 and idem.isprintable()):
            raise HttpError(
                400, "bad_request", "Idempotency-Key must be 1 to 255 printable characters"
            )
        fp = fingerprint(request.method.encode(), request.path.encode(), request.body)

        async def run() -> tuple[int, str]:
            try:
                result = await work()
            except HttpError as exc:
                if exc.status >= 500 or exc.status == 429:
                    raise  # not remembered: the client's retry submits again
                response = exc.response()
                return response.status, response.body.decode()
            return result.status, result.text()

        try:
            outcome = await self.idempotency.run(key.name, "key:" + idem, fp, run)
        except KeyReused as exc:
            raise HttpError(
                422, "idempotency_key_reused", str(exc), fields={"Idempotency-Key": str(exc)}
            ) from None
        except KeyInProgress as exc:
            raise HttpError(409, "in_progress", str(exc), retry_after=1.0) from None
        headers: tuple[tuple[str, str], ...] = ()
        if outcome.replayed:
            headers = (("idempotent-replayed", "true"),)
        return Response(outcome.status, outcome.body.encode(), headers)

    async def post_message(self, request: Request, key: ApiKeyConfig) -> Response:
        body = request.json()

        async def work() -> _Result:
            try:
                submit = self._parse(body, key)
            except Invalid as exc:
                raise HttpError(
                    422, "invalid", "the message is invalid", fields=exc.errors
                ) from None
            if submit.client_ref is not None:
                return await self._submit_ref(key, submit)
            try:
                return await self._submit_one(submit)
            except (GatewayError, StoreError, QueueError) as exc:
                raise _unavailable(exc) from None

        response = await self._idempotent(request, key, work)
        return response

    async def post_batch(self, request: Request, key: ApiKeyConfig) -> Response:
        body = request.json()
        if (
            not isinstance(body, dict)
            or set(body) != {"messages"}
            or not isinstance(body["messages"], list)
        ):
            raise HttpError(
                422,
                "invalid",
                'the body must be {"messages": [...]}',
                fields={"messages": "required: an array of messages (and nothing else)"},
            )
        items: list[object] = body["messages"]
        limit = self.config.max_batch
        if not 1 <= len(items) <= limit:
            raise HttpError(
                422,
                "invalid",
                f"a batch holds 1 to {limit} messages",
                fields={"messages": f"must hold 1 to {limit} messages, got {len(items)}"},
            )

        async def work() -> _Result:
            return await self._batch(key, items)

        return await self._idempotent(request, key, work)

    async def _batch(self, key: ApiKeyConfig, items: Sequence[object]) -> _Result:
        results: list[dict[str, Any] | None] = [None] * len(items)
        plain: list[tuple[int, SubmitRequest]] = []
        refs: list[tuple[int, SubmitRequest]] = []
        for index, item in enumerate(items):
            try:
                submit = self._parse(item, key)
            except Invalid as exc:
                results[index] = {"index": index, "result": "rejected", "errors": exc.errors}
                continue
            (refs if submit.client_ref is not None else plain).append((index, submit))
        if plain:
            # Nothing of this call is accepted if it raises: the whole batch is 503, retryable.
            try:
                answers = await self.gateway.submit([s for _, s in plain])
            except (GatewayError, StoreError, QueueError) as exc:
                raise _unavailable(exc) from None
            for (index, _), answer in zip(plain, answers, strict=True):
                if isinstance(answer, Accepted):
                    results[index] = {
                        "index": index,
                        "result": "accepted",
                        **views.accepted(answer),
                    }
                else:
                    results[index] = {
                        "index": index,
                        "result": "rejected",
                        **views.rejected(answer),
                    }
        if refs:
            limiter = trio.CapacityLimiter(REF_CONCURRENCY)

            async def one(index: int, submit: SubmitRequest) -> None:
                async with limiter:
                    try:
                        result = await self._submit_ref(key, submit)
                    except HttpError as exc:
                        result = _Result(exc.status, {"error": exc.code, "message": exc.message})
                results[index] = _item(index, result)

            async with trio.open_nursery() as nursery:
                for index, submit in refs:
                    nursery.start_soon(one, index, submit)
        done = [r for r in results if r is not None]
        accepted = sum(1 for r in done if r["result"] == "accepted")
        summary = {
            "accepted": accepted,
            "rejected": sum(1 for r in done if r["result"] == "rejected"),
            "results": done,
        }
        return _Result(202 if accepted else 422, summary)

    async def post_preview(self, request: Request, key: ApiKeyConfig) -> Response:
        try:
            content, encoding = parse_preview(request.json(), max_parts=self.config.max_parts)
        except Invalid as exc:
            raise HttpError(422, "invalid", "the content is invalid", fields=exc.errors) from None
        field = "text" if isinstance(content, str) else "binary"
        try:
            plan = count(content, encoding=encoding, mode=SplitMode.UDH8)
        except TextError as exc:
            raise HttpError(
                422, "invalid", "the content cannot be encoded", fields={field: str(exc)}
            ) from None
        return json_response(
            200,
            {
                "encoding": plan.encoding.value,
                "data_coding": plan.encoding.data_coding,
                "characters": plan.characters,
                "units": plan.units,
                "unit": "septets" if plan.encoding.value == "gsm7" else "octets",
                "per_part": plan.per_part,
                "parts": plan.parts,
                "max_parts": self.config.max_parts,
                "sendable": plan.parts <= self.config.max_parts,
            },
        )

    # -- reading ---------------------------------------------------------------------------

    @staticmethod
    def _client_filter(key: ApiKeyConfig) -> str | None:
        """Keys with the admin scope see every client's messages; others only their own."""
        return None if ApiScope.ADMIN in key.scopes else key.name

    async def get_message(self, request: Request, key: ApiKeyConfig) -> Response:
        view = await self.gateway.message(request.params["id"])
        own = self._client_filter(key)
        if view is None or (own is not None and view.client != own):
            raise HttpError(404, "not_found", "no such message")
        return json_response(200, views.message_detail(view))

    async def list_messages(self, request: Request, key: ApiKeyConfig) -> Response:
        q = request.query
        errors: dict[str, str] = {}
        for name in q:
            if name not in ("status", "client_ref", "since", "until", "cursor", "limit"):
                errors[name] = "unknown parameter"
        status = None
        if "status" in q:
            try:
                status = MessageStatus(q["status"])
            except ValueError:
                errors["status"] = f"must be one of {', '.join(s.value for s in MessageStatus)}"
        times: dict[str, float | None] = {"since": None, "until": None}
        for name in times:
            if name in q:
                raw: object = q[name]
                try:
                    raw = float(q[name]) if q[name].replace(".", "", 1).isdigit() else q[name]
                    times[name] = parse_time(raw)
                except ValueError as exc:
                    errors[name] = str(exc)
        if errors:
            raise HttpError(422, "invalid", "bad query parameters", fields=errors)
        limit = _int_param(q, "limit", 100, 1, 1000)
        filters = MessageFilter(
            status=status,
            client=self._client_filter(key),
            client_ref=q.get("client_ref") or None,
            since=times["since"],
            until=times["until"],
        )
        page = await self.gateway.store.list_messages(filters, q.get("cursor") or None, limit)
        return json_response(
            200,
            {
                "items": [views.message_summary(m) for m in page.items],
                "next_cursor": page.next_cursor,
            },
        )

    async def list_inbound(self, request: Request, key: ApiKeyConfig) -> Response:
        limit = _int_param(request.query, "limit", 100, 1, 1000)
        page = await self.gateway.store.list_inbound(request.query.get("cursor") or None, limit)
        return json_response(
            200, {"items": [views.inbound(m) for m in page.items], "next_cursor": page.next_cursor}
        )

    async def list_dead_letters(self, request: Request, key: ApiKeyConfig) -> Response:
        limit = _int_param(request.query, "limit", 100, 1, MAX_DLQ_PAGE)
        offset = _int_param(request.query, "offset", 0, 0, 10**9)
        letters = await self.gateway.dead_letters(limit=limit, offset=offset)
        items = [views.dead_letter(d, await self.gateway.message(d.message.id)) for d in letters]
        next_offset = offset + len(items) if len(items) == limit else None
        return json_response(200, {"items": items, "next_offset": next_offset})

    async def replay(self, request: Request, key: ApiKeyConfig) -> Response:
        message_id = request.params["id"]
        moved = await self.gateway.replay_dead_letters([message_id])
        if not moved:
            raise HttpError(404, "not_found", "no such message in the dead-letter queue")
        return json_response(202, {"id": message_id, "replayed": True})

    async def providers(self, request: Request, key: ApiKeyConfig) -> Response:
        gateway = self.gateway
        items = []
        for name, health in gateway.providers.snapshot().items():
            try:
                configured: float | None = gateway.config.provider(name).rate.per_second
                current: float | None = gateway.current_rate(name)
            except KeyError:  # removed by a reload meanwhile
                configured = current = None
            items.append(views.provider(health, current_rate=current, configured_rate=configured))
        depth = await gateway.queue_depth()
        return json_response(
            200,
            {
                "providers": items,
                "queue": views.depth(depth),
                "max_queue_depth": gateway.config.queue.max_depth,
                "instances": gateway.instances(),
            },
        )

    # -- health ----------------------------------------------------------------------------

    async def healthz(self, request: Request, key: None) -> Response:
        return json_response(200, {"alive": True})

    async def readyz(self, request: Request, key: None) -> Response:
        gateway = self.gateway
        checks = {
            "accepting": gateway.accepting,
            "storage": False,
            "queue": False,
            "provider_bound": False,
            "sent_by_others": gateway.sent_by_others(),
        }
        with trio.move_on_after(5.0):
            try:
                await gateway.store.list_messages(limit=1)
                # Reads work on a full disk too: after writes failed, a write must work.
                if gateway.store.writes_failing:
                    await gateway.store.probe_write()
                checks["storage"] = True
            except (GatewayNotRunning, StoreError):
                pass
            try:
                await gateway.queue_depth()
                # Likewise the embedded queue's file (it may be on another disk).
                if gateway.queue_writes_failing:
                    await gateway.probe_queue()
                checks["queue"] = True
            except (GatewayNotRunning, QueueError):
                pass
            with contextlib.suppress(GatewayNotRunning):
                checks["provider_bound"] = any(
                    h.bound > 0 for h in gateway.providers.snapshot().values()
                )
        # An instance the shared limits leave without connections is ready unbound: it takes
        # submissions into the shared queue and the others send them.
        ready = (
            checks["accepting"]
            and checks["storage"]
            and checks["queue"]
            and (checks["provider_bound"] or checks["sent_by_others"])
        )
        return json_response(200 if ready else 503, {"ready": ready, "checks": checks})


async def _status_of(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
    """Run ``app`` for this request; the status it answered with (500 if it sent none)."""
    status = 500

    async def watched(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
        await send(message)

    await app(scope, receive, watched)
    return status


def _item(index: int, result: _Result) -> dict[str, Any]:
    if result.status == 202:
        return {"index": index, "result": "accepted", **result.body}
    if result.status == 422:
        return {"index": index, "result": "rejected", "errors": result.body.get("fields", {})}
    return {"index": index, "result": "unavailable", "error": result.body.get("message", "")}
