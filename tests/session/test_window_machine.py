"""A state machine over the session core's window: no request is lost or completed twice.

Requests are submitted, answered out of order, nacked, answered twice, left to time out, and cut
off by disconnects; every request must leave the window exactly once, by exactly one of those
routes, and the window's counts must always agree with the model.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from smpp_codec import (
    BindTransceiver,
    BindTransceiverResp,
    CommandStatus,
    GenericNack,
    SubmitSm,
    SubmitSmResp,
    encode,
)
from smpp_codec.session import (
    NEED_DATA,
    ResponseReceived,
    Role,
    SequenceAllocator,
    Session,
    UnexpectedResponse,
    WindowFull,
)

WINDOW = 4


class WindowMachine(RuleBasedStateMachine):
    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.next_token = 0
        self.outstanding: dict[int, int] = {}  # token -> sequence_number
        self.completed: dict[int, str] = {}  # token -> how
        self.finished: dict[int, tuple[int, int]] = {}  # token -> (generation, seq) answered
        self.generation = 0
        self._connect(start=1)

    def _connect(self, start: int) -> None:
        self.generation += 1
        self.session = Session(Role.ESME, window=WINDOW, sequence=SequenceAllocator(start))
        _data, bind = self.session.send_request(
            BindTransceiver(sequence_number=0, system_id="m"), now=self.now
        )
        self.session.receive_data(encode(BindTransceiverResp(sequence_number=bind.sequence_number)))
        assert isinstance(self.session.next_event(), ResponseReceived)

    def _complete(self, token: int, how: str) -> None:
        assert token not in self.completed, f"token {token} completed twice"
        assert token in self.outstanding, f"token {token} completed but not outstanding"
        del self.outstanding[token]
        self.completed[token] = how

    def _drain(self) -> list[object]:
        out = []
        while (event := self.session.next_event()) is not NEED_DATA:
            out.append(event)
        return out

    @rule(target=tokens, timeout=st.sampled_from([None, 1.0, 5.0]))
    def submit(self, timeout: float | None) -> int:
        token = self.next_token
        self.next_token += 1
        try:
            _, item = self.session.send_request(
                SubmitSm(sequence_number=0), now=self.now, timeout=timeout, token=token
            )
        except WindowFull:
            assert len(self.outstanding) == WINDOW
            self.completed[token] = "refused"
            return token
        assert item.token == token
        self.outstanding[token] = item.sequence_number
        return token

    @precondition(lambda self: self.outstanding)
    @rule(data=st.data(), nack=st.booleans())
    def answer_one(self, data: st.DataObject, nack: bool) -> None:
        token = data.draw(st.sampled_from(sorted(self.outstanding)))
        seq = self.outstanding[token]
        pdu = (
            GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RSYSERR)
            if nack
            else SubmitSmResp(sequence_number=seq, message_id=str(token))
        )
        self.session.receive_data(encode(pdu))
        [event] = self._drain()
        assert isinstance(event, ResponseReceived)
        assert event.outstanding.token == token
        self._complete(token, "nack" if nack else "response")
        self.finished[token] = (self.generation, seq)

    @rule(token=tokens)
    def late_or_duplicate_answer(self, token: int) -> None:
        """An answer for a request that is no longer outstanding changes nothing."""
        if token not in self.finished:
            return
        generation, seq = self.finished[token]
        if generation != self.generation or seq in set(self.outstanding.values()):
            seq = 0x7FFFFFFF - 10 - token % 8  # a number no live request holds
        self.session.receive_data(encode(SubmitSmResp(sequence_number=seq)))
        [event] = self._drain()
        assert isinstance(event, UnexpectedResponse)

    @rule(step=st.sampled_from([0.5, 1.0, 2.0, 6.0]))
    def time_passes(self, step: float) -> None:
        self.now += step
        for item in self.session.handle_timeout(self.now):
            assert item.deadline is not None and item.deadline <= self.now
            self._complete(item.token, "timeout")  # type: ignore[arg-type]
            self.finished[item.token] = (self.generation, item.sequence_number)  # type: ignore[index]

    @rule(start=st.sampled_from([1, 0x7FFFFFFE]))
    def disconnect(self, start: int) -> None:
        for item in self.session.close():
            self._complete(item.token, "lost")  # type: ignore[arg-type]
        assert self._drain() == []
        self._connect(start)

    @invariant()
    def window_agrees_with_the_model(self) -> None:
        window = self.session.window
        assert window.in_use == len(self.outstanding) <= WINDOW
        assert {it.token for it in window.items()} == set(self.outstanding)
        deadline = window.next_deadline()
        if deadline is not None:
            assert deadline > self.now

    def teardown(self) -> None:
        for item in self.session.close():
            self._complete(item.token, "lost")  # type: ignore[arg-type]
        # Every request ever made ended in exactly one way.
        assert not self.outstanding
        assert set(self.completed) == set(range(self.next_token))


TestWindow = WindowMachine.TestCase
