"""Which providers may carry a message, in the order to try them (pure, no I/O, no clock).

:class:`Router` holds the ``[[routes]]`` rules. :meth:`Router.route` takes a message's
attributes and returns a :class:`RouteDecision` (the candidate providers, first to try first)
or a :class:`NoRoute` saying why there is none: a message is never dropped silently.
:func:`next_provider` walks the candidates on failover.

Rules are tried in order; the first whose criteria all match wins (see
:class:`smsgw.config.RouteConfig`). With no ``[[routes]]`` at all, every message may go to
every provider, in the order of ``[[providers]]`` (pure failover). With routes, a message no
route matches gets :class:`NoRoute`: add a route without criteria last to catch the rest.

**Weights.** A route's ``providers`` list is its failover order. Adjacent entries that carry
a ``weight`` form a *tier* that shares load: each message gets one of them first, chosen by
*smooth weighted round robin* (the nginx algorithm), and the others of the tier after it in
list order; an entry without a weight is a tier of its own. So

- ``["a", "b"]``: always a, then b;
- ``[{name="a", weight=3}, {name="b", weight=1}, "c"]``: a first for 3 messages in 4 and b
  first for the other one, the other of the two second, c last.

Round robin rather than a random draw: the shares are exact over every ``sum(weights)``
consecutive messages (not just on average), the picks are reproducible in tests, and no random
source is needed. The counters live in the :class:`Router` (one per process; rebuilt on
reload).

**Health.** ``healthy`` (a predicate or a set of provider names) moves unhealthy providers to
the end of the candidates, in their list order; they are never dropped, so a message still
has somewhere to go if health information is stale. The weighted pick is made among the
healthy members of a tier, so their shares stay proportional while one is down.

**Pinning.** A message that names a provider (``MessageAttrs.provider``) goes to that provider
only, whatever the routes say; naming an unknown provider is a :class:`NoRoute`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence

import attrs

from .config import ProviderConfig, RouteConfig

__all__ = [
    "CachedHealth",
    "Health",
    "MessageAttrs",
    "NoRoute",
    "RouteDecision",
    "Router",
    "next_provider",
]

#: Provider health as the router takes it: a predicate, a set of healthy names, or None (all).
Health = Callable[[str], bool] | Collection[str] | None


@attrs.frozen
class MessageAttrs:
    """What routing looks at in a message."""

    destination: str
    source: str = ""
    tags: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)
    #: The API client that submitted it.
    client: str | None = None
    #: A provider the message is pinned to (bypasses the routes).
    provider: str | None = None


@attrs.frozen
class RouteDecision:
    """The providers a message may go to, in the order to try them."""

    #: The route's label (its name or ``routes[i]``), ``"default"`` without routes, ``"pinned"``.
    route: str
    candidates: tuple[str, ...]
    pinned: bool = False


@attrs.frozen
class NoRoute:
    """No provider can take the message; ``reason`` says why (it becomes the failure reason)."""

    reason: str


class CachedHealth:
    """A health predicate whose answers are kept for ``ttl`` seconds of ``clock``.

    Asking a provider manager for health costs a look at its connections and error window; the
    answer changes on the scale of seconds, while the processor asks for every message. A short
    TTL (a tenth of a second) keeps routing current without paying that per message.
    """

    def __init__(
        self, healthy: Callable[[str], bool], *, ttl: float, clock: Callable[[], float]
    ) -> None:
        self._healthy = healthy
        self._ttl = ttl
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}

    def __call__(self, name: str) -> bool:
        now = self._clock()
        cached = self._answers.get(name)
        if cached is not None and now < cached[1]:
            return cached[0]
        answer = self._healthy(name)
        self._answers[name] = (answer, now + self._ttl)
        return answer


def _health_predicate(healthy: Health) -> Callable[[str], bool]:
    if healthy is None:
        return lambda _name: True
    if callable(healthy):
        return healthy
    names = frozenset(healthy)
    return names.__contains__


class _Tier:
    """Providers sharing load by weight (or one provider alone, without weight)."""

    def __init__(self, names: Sequence[str], weights: Sequence[int] | None) -> None:
        self.names = tuple(names)
        self.weights = tuple(weights) if weights is not None else None
        # Smooth weighted round robin state: one running score per member.
        self._current = [0] * len(self.names)

    def order(self, is_healthy: Callable[[str], bool]) -> tuple[list[str], list[str]]:
        """(healthy members with this message's pick first, unhealthy members)."""
        healthy: list[int] = []
        unhealthy: list[str] = []
        for i, name in enumerate(self.names):
            if is_healthy(name):
                healthy.append(i)
            else:
                unhealthy.append(name)
        if self.weights is None or len(healthy) <= 1:
            return [self.names[i] for i in healthy], unhealthy
        pick = self._pick(healthy)
        rest = [self.names[i] for i in healthy if i != pick]
        return [self.names[pick], *rest], unhealthy

    def _pick(self, members: list[int]) -> int:
        assert self.weights is not None
        total = 0
        best = members[0]
        for i in members:
            self._current[i] += self.weights[i]
            total += self.weights[i]
            if self._current[i] > self._current[best]:
                best = i
        self._current[best] -= total
        return best


def _tiers(route: RouteConfig) -> list[_Tier]:
    tiers: list[_Tier] = []
    group: list[tuple[str, int]] = []
    for target in route.providers:
        if target.weight is None:
            if group:
                tiers.append(_Tier([n for n, _ in group], [w for _, w in group]))
                group = []
            tiers.append(_Tier([target.name], None))
        else:
            group.append((target.name, target.weight))
    if group:
        tiers.append(_Tier([n for n, _ in group], [w for _, w in group]))
    return tiers


def _strip_plus(address: str) -> str:
    return address[1:] if address.startswith("+") else address


class _Rule:
    def __init__(self, label: str, route: RouteConfig) -> None:
        self.label = label
        self.route = route
        self.prefixes = tuple(_strip_plus(p) for p in route.destination_prefixes)
        self.sources = frozenset(route.sources)
        self.tags = frozenset(route.tags)
        self.clients = frozenset(route.clients)
        self.tiers = _tiers(route)

    def matches(self, message: MessageAttrs) -> bool:
        if self.prefixes and not _strip_plus(message.destination).startswith(self.prefixes):
            return False
        regex = self.route.destination_regex
        if regex is not None and regex.search(message.destination) is None:
            return False
        if self.sources and message.source not in self.sources:
            return False
        if not self.tags <= message.tags:
            return False
        return not self.clients or message.client in self.clients


class Router:
    """See the module docstring. ``providers`` are the configured providers (or their names),
    in ``[[providers]]`` order; a route naming another provider is a ``ValueError``."""

    def __init__(
        self, routes: Sequence[RouteConfig], providers: Iterable[ProviderConfig | str]
    ) -> None:
        self.providers = tuple(p if isinstance(p, str) else p.name for p in providers)
        if not self.providers:
            raise ValueError("a router needs at least one provider")
        known = set(self.providers)
        for index, route in enumerate(routes):
            for target in route.providers:
                if target.name not in known:
                    raise ValueError(f'{route.label(index)} names unknown provider "{target.name}"')
        self._rules = [_Rule(route.label(i), route) for i, route in enumerate(routes)]
        if not self._rules:
            self._default: list[_Tier] | None = [_Tier([name], None) for name in self.providers]
        else:
            self._default = None

    def route(self, message: MessageAttrs, healthy: Health = None) -> RouteDecision | NoRoute:
        """The candidates for ``message``, or why there are none (module docstring)."""
        if message.provider is not None:
            if message.provider not in self.providers:
                return NoRoute(f'pinned provider "{message.provider}" is not configured')
            return RouteDecision("pinned", (message.provider,), pinned=True)
        if self._default is not None:
            return RouteDecision("default", _order(self._default, healthy))
        for rule in self._rules:
            if rule.matches(message):
                return RouteDecision(rule.label, _order(rule.tiers, healthy))
        return NoRoute(f"no route matches {_describe(message)}")


def _order(tiers: Sequence[_Tier], healthy: Health) -> tuple[str, ...]:
    is_healthy = _health_predicate(healthy)
    first: list[str] = []
    last: list[str] = []
    for tier in tiers:
        up, down = tier.order(is_healthy)
        first += up
        last += down
    return (*first, *last)


def _describe(message: MessageAttrs) -> str:
    parts = [f'destination "{message.destination}"', f'source "{message.source}"']
    if message.tags:
        parts.append("tags " + ", ".join(f'"{t}"' for t in sorted(message.tags)))
    if message.client is not None:
        parts.append(f'client "{message.client}"')
    return ", ".join(parts)


def next_provider(
    decision: RouteDecision, tried: Collection[str], healthy: Health = None
) -> str | None:
    """The next candidate of ``decision`` not in ``tried``, or None when all were tried.

    With ``healthy``, an untried healthy candidate comes before an untried unhealthy one
    (health may have changed since the decision was made); otherwise the decision's order.
    """
    untried = [name for name in decision.candidates if name not in tried]
    if not untried:
        return None
    is_healthy = _health_predicate(healthy)
    for name in untried:
        if is_healthy(name):
            return name
    return untried[0]
