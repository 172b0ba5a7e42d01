"""``smsgw send``, ``smsgw status``, ``smsgw dlq list|replay``: the client API from a shell.

They talk HTTP to a running gateway (``--url``, default ``$SMSGW_API_URL`` or
``http://127.0.0.1:8080``) with an API key (``--key`` or ``$SMSGW_API_KEY``), print the API's
JSON answer on stdout, errors on stderr, and exit with a code scripts can act on
(:class:`ExitCode`; docs/api.md has the table).
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx

__all__ = ["ExitCode", "main"]

DEFAULT_URL = "http://127.0.0.1:8080"


class ExitCode(enum.IntEnum):
    """What the client commands exit with (``sysexits.h`` values where one fits)."""

    #: Done: the message was accepted, the status read, the dead letters listed or replayed.
    OK = 0
    #: No such message (``status``) or no such dead letter (``dlq replay``).
    NOT_FOUND = 1
    #: Bad command line.
    USAGE = 2
    #: The API refused the request as invalid (HTTP 400, 413, 422): fix the input.
    DATAERR = 65
    #: The gateway could not be reached (connection refused, timeout, bad URL).
    UNAVAILABLE = 69
    #: The API answered something unexpected (HTTP 5xx other than 503, or not JSON).
    SOFTWARE = 70
    #: Try again later: the gateway is busy or rate-limited this key (HTTP 503, 429).
    TEMPFAIL = 75
    #: The key is missing, wrong, or lacks the scope (HTTP 401, 403).
    NOPERM = 77


DESCRIPTION = """\
Client commands of the gateway's HTTP API.

  smsgw send --to +4915112345678 --from ACME --text "Hello"
  echo "Hello" | smsgw send --to +4915112345678 --from ACME
  smsgw status 3f2a...            (status, parts and full history of a message)
  smsgw dlq list                  (dead-lettered messages; needs an admin key)
  smsgw dlq replay ID [ID...]     (send them again; needs an admin key)

The API's JSON answer is printed on stdout; errors go to stderr.
"""

EPILOG = """\
environment:
  SMSGW_API_URL   the API's base URL (default http://127.0.0.1:8080)
  SMSGW_API_KEY   the API key (better than --key: not visible in the process list)

exit codes:
  0   done                        1   no such message / dead letter
  2   bad command line            65  the API refused the input (400, 413, 422)
  69  the gateway is unreachable  70  unexpected answer (5xx)
  75  retry later (429, 503)      77  key missing, wrong, or lacking the scope (401, 403)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smsgw",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("SMSGW_API_URL", DEFAULT_URL),
        help="the API's base URL (default: $SMSGW_API_URL or %(default)s)",
    )
    common.add_argument("--key", help="the API key (default: $SMSGW_API_KEY)")
    common.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the API (default 30)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    send = commands.add_parser(
        "send",
        parents=[common],
        help="submit one message",
        description="Submit one message (POST /api/v1/messages). Prints its id, status, parts "
        "and encoding once the gateway has durably queued it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    send.add_argument("--to", required=True, help="destination number, e.g. +4915112345678")
    send.add_argument(
        "--from",
        dest="source",
        required=True,
        help="sender: an E.164 number, a short code, or up to 11 letters and digits",
    )
    send.add_argument("--text", help="the text (default: read from stdin)")
    send.add_argument(
        "--encoding",
        default="auto",
        help="auto (GSM 7-bit if possible, else UCS-2), gsm7, ucs2, latin1 (default auto)",
    )
    send.add_argument("--priority", type=int, help="0..9, higher is sent first (default 5)")
    send.add_argument("--validity", type=float, help="seconds the message is worth sending")
    send.add_argument("--schedule-at", help="send at this RFC 3339 time, e.g. 2026-05-01T09:00:00Z")
    send.add_argument("--client-ref", help="your reference; a repeat returns the same message")
    send.add_argument(
        "--idempotency-key", help="a repeat with the same key returns the same message"
    )
    send.add_argument("--callback-url", help="where status webhooks of this message go")
    send.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    send.add_argument("--provider", help="send through this provider only")
    send.add_argument("--no-receipt", action="store_true", help="ask for no delivery receipt")

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show a message's status and history",
        description="Show a message: status, parts and the full event history "
        "(GET /api/v1/messages/ID).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("id", help="the message id given by send")

    dlq = commands.add_parser(
        "dlq",
        help="list or replay dead-lettered messages",
        description="The dead-letter queue: messages that failed for good (needs an admin key).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        parents=[common],
        help="list dead letters, oldest first, with each message's history",
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many (1..500)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many")
    replay = actions.add_parser(
        "replay", parents=[common], help="put dead letters back in the queue"
    )
    replay.add_argument("ids", nargs="+", metavar="ID", help="message ids to replay")
    return parser


def _exit_code(status: int) -> ExitCode:
    if status < 300:
        return ExitCode.OK
    if status == 404:
        return ExitCode.NOT_FOUND
    if status in (401, 403):
        return ExitCode.NOPERM
    if status in (429, 503):
        return ExitCode.TEMPFAIL
    if 400 <= status < 500:
        return ExitCode.DATAERR
    return ExitCode.SOFTWARE


def _send_body(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    text = args.text if args.text is not None else stdin.read().rstrip("\n")
    body: dict[str, Any] = {"to": args.to, "from": args.source, "text": text}
    optional = {
        "encoding": args.encoding,
        "priority": args.priority,
        "validity": args.validity,
        "schedule_at": args.schedule_at,
        "client_ref": args.client_ref,
        "callback_url": args.callback_url,
        "provider": args.provider,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.tag:
        body["tags"] = args.tag
    if args.no_receipt:
        body["receipt"] = False
    return body


def _request(
    args: argparse.Namespace, stdin: TextIO
) -> tuple[str, str, dict[str, Any] | None, dict[str, Any], dict[str, str]]:
    """(method, path, JSON body, query, extra headers) for the command."""
    if args.command == "send":
        headers = {}
        if args.idempotency_key:
            headers["Idempotency-Key"] = args.idempotency_key
        return "POST", "/messages", _send_body(args, stdin), {}, headers
    if args.command == "status":
        return "GET", f"/messages/{args.id}", None, {}, {}
    if args.action == "list":
        return "GET", "/dead-letters", None, {"limit": args.limit, "offset": args.offset}, {}
    raise AssertionError(args)


def _call(
    client: httpx.Client,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    query: dict[str, Any],
    headers: dict[str, str],
) -> tuple[int, Any]:
    response = client.request(method, path, json=body, params=query, headers=headers)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": "not_json", "message": response.text[:500]}


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``send ...``, ``status ...`` or ``dlq ...``; returns the exit code."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else ExitCode.USAGE
    key = args.key or os.environ.get("SMSGW_API_KEY")
    if not key:
        print("smsgw: an API key is needed: --key or $SMSGW_API_KEY", file=stderr)
        return ExitCode.USAGE
    base = args.url.rstrip("/") + "/api/v1"
    try:
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=args.timeout
        ) as client:
            if args.command == "dlq" and args.action == "replay":
                return _replay(client, args.ids, stdout, stderr)
            status, answer = _call(client, *_request(args, stdin))
    except httpx.HTTPError as exc:
        print(f"smsgw: cannot reach the API at {base}: {exc}", file=stderr)
        return ExitCode.UNAVAILABLE
    code = _exit_code(status)
    print(json.dumps(answer, ensure_ascii=False, indent=2), file=stdout if code == 0 else stderr)
    return code


def _replay(client: httpx.Client, ids: Sequence[str], stdout: TextIO, stderr: TextIO) -> int:
    """Replay each id (one JSON line each); exit 0 if all were replayed, else the code of the
    last failure."""
    result = ExitCode.OK
    for message_id in ids:
        status, answer = _call(client, "POST", f"/dead-letters/{message_id}/replay", None, {}, {})
        code = _exit_code(status)
        line = json.dumps({"id": message_id, **answer}, ensure_ascii=False)
        print(line, file=stdout if code == ExitCode.OK else stderr)
        if code != ExitCode.OK:
            result = code
    return result


if __name__ == "__main__":
    sys.exit(main())
