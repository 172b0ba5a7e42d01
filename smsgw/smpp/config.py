"""Settings of an SMPP client: where to connect, how to bind, and every timer."""

from __future__ import annotations

import enum
import ssl

import attrs

from smpp_codec import CommandStatus

from .backoff import BackoffPolicy


class BindMode(enum.Enum):
    """``TRANSCEIVER``: one connection both ways. ``TRANSMITTER_RECEIVER``: a pair, one
    bind_transmitter for submits and one bind_receiver for deliveries. ``TRANSMITTER`` /
    ``RECEIVER``: one direction only."""

    TRANSCEIVER = "transceiver"
    TRANSMITTER_RECEIVER = "transmitter_receiver"
    TRANSMITTER = "transmitter"
    RECEIVER = "receiver"


#: The default ``inbound_answer_timeout`` (seconds).
INBOUND_ANSWER_TIMEOUT = 30.0


@attrs.frozen
class TlsConfig:
    """TLS towards the SMSC. ``ca_file``: the CAs to trust (None: the system's);
    ``verify=False`` accepts any certificate (test links only); ``server_hostname`` overrides
    the name checked against the certificate (default: the host connected to)."""

    ca_file: str | None = None
    verify: bool = True
    server_hostname: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be > 0, got {value}")


@attrs.frozen
class ClientConfig:
    """Everything one SMPP client needs; times in seconds.

    - ``window``: application requests outstanding at once (per connection).
    - ``request_timeout``: default limit of one :meth:`submit`, from the call to the answer.
    - ``response_timeout``: limit for bind, enquire_link and unbind answers; an enquire_link
      unanswered this long means the link is dead.
    - ``enquire_link_interval``: an enquire_link goes out when nothing was received for this long.
    - ``drain_timeout``: on a graceful close, how long outstanding requests may take to finish.
    - ``inbound_buffer``: deliver_sm / data_sm waiting for the application (the bounded channel).
    - ``inbound_answer_timeout`` / ``inbound_default_status``: an inbound PDU the application has
      not answered this long after it arrived is answered with this status (a temporary error by
      default, so the SMSC delivers it again).
    """

    system_id: str
    password: str
    host: str = "127.0.0.1"
    port: int = 2775
    system_type: str = ""
    bind_mode: BindMode = BindMode.TRANSCEIVER
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""
    tls: TlsConfig | None = None
    window: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    connect_timeout: float = attrs.field(default=10.0, validator=_positive)
    request_timeout: float = attrs.field(default=30.0, validator=_positive)
    response_timeout: float = attrs.field(default=10.0, validator=_positive)
    enquire_link_interval: float = attrs.field(default=30.0, validator=_positive)
    drain_timeout: float = attrs.field(default=5.0, validator=attrs.validators.ge(0.0))
    inbound_buffer: int = attrs.field(default=64, validator=attrs.validators.ge(0))
    inbound_answer_timeout: float = attrs.field(default=INBOUND_ANSWER_TIMEOUT, validator=_positive)
    inbound_default_status: int = CommandStatus.ESME_RX_T_APPN
    backoff: BackoffPolicy = BackoffPolicy()
    max_command_length: int = attrs.field(default=70_000, validator=attrs.validators.ge(16))
