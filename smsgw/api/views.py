"""Gateway objects -> the JSON the API returns (docs/openapi.yaml has the schemas). Times are
epoch seconds (floats), as in the webhooks."""

from __future__ import annotations

import base64
from typing import Any

from smsgw.messages import Accepted, MessageView, Rejected
from smsgw.model import InboundMessage, Message
from smsgw.providers import ProviderHealth
from smsgw.queue.base import DeadLetter, QueueDepth

from .validation import gateway_errors


def accepted(result: Accepted) -> dict[str, Any]:
    return {
        "id": result.id,
        "status": result.status.value,
        "parts": result.parts,
        "encoding": result.encoding,
    }


def rejected(result: Rejected) -> dict[str, Any]:
    return {"errors": gateway_errors(result.errors)}


def message_summary(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "status": m.status.value,
        "reason": m.reason,
        "from": m.source,
        "to": m.destination,
        "parts": m.parts,
        "client": m.client,
        "client_ref": m.client_ref,
        "provider": m.provider,
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "schedule_at": m.schedule_at,
        "expires_at": m.expires_at,
    }


def message_detail(v: MessageView) -> dict[str, Any]:
    return {
        "id": v.id,
        "status": v.status.value,
        "reason": v.reason,
        "from": v.source,
        "to": v.destination,
        "client": v.client,
        "client_ref": v.client_ref,
        "provider": v.provider,
        "created_at": v.created_at,
        "updated_at": v.updated_at,
        "schedule_at": v.schedule_at,
        "expires_at": v.expires_at,
        "parts": [
            {
                "part_number": p.part_number,
                "status": p.status.value,
                "reason": p.reason,
                "provider": p.provider,
                "smsc_id": p.smsc_id,
                "updated_at": p.updated_at,
            }
            for p in v.parts
        ],
        "events": [
            {
                "seq": e.seq,
                "part_number": e.part_number,
                "status": e.status.value,
                "reason": e.reason,
                "at": e.at,
                "applied": e.applied,
            }
            for e in v.events
        ],
    }


def inbound(m: InboundMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "provider": m.provider,
        "from": m.source,
        "to": m.destination,
        "text": m.text,
        "payload": None if m.text is not None else base64.b64encode(m.payload).decode("ascii"),
        "data_coding": m.data_coding,
        "parts": m.parts,
        "complete": m.complete,
        "received_at": m.received_at,
    }


def dead_letter(d: DeadLetter, view: MessageView | None) -> dict[str, Any]:
    return {
        "id": d.message.id,
        "reason": d.reason,
        "dead_at": d.dead_at,
        "attempts": d.message.attempts,
        "priority": d.message.priority,
        "enqueued_at": d.message.enqueued_at,
        "last_error": d.message.last_error,
        "message": None if view is None else message_detail(view),
    }


def depth(d: QueueDepth) -> dict[str, Any]:
    return {
        "ready": d.ready,
        "delayed": d.delayed,
        "leased": d.leased,
        "dead": d.dead,
        "ready_by_priority": {str(k): v for k, v in sorted(d.ready_by_priority.items())},
    }


def provider(
    h: ProviderHealth, *, current_rate: float | None, configured_rate: float | None
) -> dict[str, Any]:
    return {
        "name": h.name,
        "healthy": h.healthy,
        "configured_connections": h.configured,
        "bound_connections": h.bound,
        "in_flight": h.in_flight,
        "window_capacity": h.capacity,
        "waiting": h.waiting,
        "current_rate": current_rate,
        "configured_rate": configured_rate,
        "error_rate": h.error_rate,
        "last_error": h.last_error,
        "connections": [
            {
                "index": c.index,
                "state": c.state.value,
                "in_flight": c.in_flight,
                "window": c.window,
                "last_error": c.last_error,
            }
            for c in h.connections
        ],
    }
