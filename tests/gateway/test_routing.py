"""Routing: rule matching, weighted tiers, health, pinning, failover order."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smsgw.config import RouteConfig, RouteTarget
from smsgw.routing import (
    CachedHealth,
    MessageAttrs,
    NoRoute,
    RouteDecision,
    Router,
    next_provider,
)


def route(
    *providers: str | tuple[str, int], name: str | None = None, **criteria: object
) -> RouteConfig:
    targets = tuple(
        RouteTarget(p) if isinstance(p, str) else RouteTarget(p[0], p[1]) for p in providers
    )
    return RouteConfig(providers=targets, name=name, **criteria)  # type: ignore[arg-type]


def msg(destination: str = "447700900123", **attrs: object) -> MessageAttrs:
    return MessageAttrs(destination, **attrs)  # type: ignore[arg-type]


def candidates(decision: RouteDecision | NoRoute) -> tuple[str, ...]:
    assert isinstance(decision, RouteDecision), decision
    return decision.candidates


# --- rules ----------------------------------------------------------------------------------


def test_without_routes_every_provider_in_configured_order() -> None:
    router = Router([], ["a", "b", "c"])
    decision = router.route(msg())
    assert decision == RouteDecision("default", ("a", "b", "c"))


def test_first_matching_route_wins() -> None:
    router = Router(
        [
            route("b", name="uk", destination_prefixes=("44",)),
            route("c", name="uk-again", destination_prefixes=("447",)),
            route("a", name="rest"),
        ],
        ["a", "b", "c"],
    )
    assert router.route(msg("447700900123")) == RouteDecision("uk", ("b",))
    assert router.route(msg("33612345678")) == RouteDecision("rest", ("a",))


@pytest.mark.parametrize(
    ("prefixes", "destination", "matches"),
    [
        (("44",), "447700900123", True),
        (("44",), "+447700900123", True),
        (("+44",), "447700900123", True),
        (("+44",), "+447700900123", True),
        (("33", "44"), "4477", True),
        (("44",), "3344", False),
        (("447",), "44", False),
    ],
)
def test_destination_prefixes_ignore_a_leading_plus(
    prefixes: tuple[str, ...], destination: str, matches: bool
) -> None:
    router = Router([route("a", destination_prefixes=prefixes)], ["a"])
    assert isinstance(router.route(msg(destination)), RouteDecision) is matches


def test_destination_regex_is_searched_in_the_destination_as_given() -> None:
    rule = route("a", destination_regex=re.compile(r"^\+?447[0-9]{9}$"))
    router = Router([rule], ["a"])
    assert isinstance(router.route(msg("+447700900123")), RouteDecision)
    assert isinstance(router.route(msg("447700900123")), RouteDecision)
    assert isinstance(router.route(msg("4477009001234")), NoRoute)
    unanchored = Router([route("a", destination_regex=re.compile("900"))], ["a"])
    assert isinstance(unanchored.route(msg("447700900123")), RouteDecision)


def test_every_given_criterion_must_match() -> None:
    rule = route(
        "a",
        destination_prefixes=("44",),
        sources=("Shop",),
        tags=("otp", "vip"),
        clients=("c1", "c2"),
    )
    router = Router([rule], ["a"])
    good: dict[str, Any] = {"source": "Shop", "tags": {"otp", "vip", "extra"}, "client": "c2"}
    assert isinstance(router.route(msg(**good)), RouteDecision)
    for change in (
        {"destination": "33123"},
        {"source": "shop"},
        {"tags": {"otp"}},
        {"client": "c3"},
        {"client": None},
    ):
        attrs = {"destination": "447700900123", **good, **change}
        assert isinstance(router.route(MessageAttrs(**attrs)), NoRoute), change


def test_no_route_says_what_did_not_match() -> None:
    router = Router([route("a", destination_prefixes=("33",))], ["a"])
    assert router.route(msg("4477", source="Shop", tags={"b", "a"}, client="c1")) == NoRoute(
        'no route matches destination "4477", source "Shop", tags "a", "b", client "c1"'
    )
    assert router.route(msg("4477")) == NoRoute('no route matches destination "4477", source ""')


def test_a_pinned_provider_is_the_only_candidate_whatever_the_routes() -> None:
    router = Router([route("a", destination_prefixes=("33",))], ["a", "b"])
    assert router.route(msg("4477", provider="b")) == RouteDecision("pinned", ("b",), pinned=True)
    assert router.route(msg("4477", provider="b"), healthy=set()) == RouteDecision(
        "pinned", ("b",), pinned=True
    )
    assert router.route(msg(provider="zz")) == NoRoute('pinned provider "zz" is not configured')


def test_router_refuses_routes_to_unknown_providers() -> None:
    with pytest.raises(ValueError, match='uk names unknown provider "x"'):
        Router([route("a", "x", name="uk")], ["a"])
    with pytest.raises(ValueError, match="at least one provider"):
        Router([], [])


# --- weights --------------------------------------------------------------------------------


def test_a_weighted_tier_shares_the_first_place_by_smooth_round_robin() -> None:
    router = Router([route(("a", 3), ("b", 1), "c")], ["a", "b", "c"])
    picks = [candidates(router.route(msg())) for _ in range(8)]
    assert (
        picks
        == [
            ("a", "b", "c"),
            ("a", "b", "c"),
            ("b", "a", "c"),
            ("a", "b", "c"),
        ]
        * 2
    )


def test_unweighted_entries_split_weighted_tiers() -> None:
    router = Router([route(("a", 1), ("b", 1), "c", ("d", 1), ("e", 1))], ["a", "b", "c", "d", "e"])
    picks = [candidates(router.route(msg())) for _ in range(2)]
    assert picks == [("a", "b", "c", "d", "e"), ("b", "a", "c", "e", "d")]


# --- health ---------------------------------------------------------------------------------


def test_unhealthy_providers_go_last_in_their_order_never_dropped() -> None:
    router = Router([route("a", "b", "c", "d")], ["a", "b", "c", "d"])
    assert candidates(router.route(msg(), healthy={"b", "d"})) == ("b", "d", "a", "c")
    assert candidates(router.route(msg(), healthy=lambda name: name != "a")) == (
        "b",
        "c",
        "d",
        "a",
    )
    assert candidates(router.route(msg(), healthy=set())) == ("a", "b", "c", "d")


def test_weighted_pick_is_made_among_the_healthy() -> None:
    router = Router([route(("a", 2), ("b", 1), ("c", 1))], ["a", "b", "c"])
    firsts = Counter(candidates(router.route(msg(), healthy={"b", "c"}))[0] for _ in range(10))
    assert firsts == {"b": 5, "c": 5}
    decision = router.route(msg(), healthy={"b", "c"})
    assert candidates(decision)[-1] == "a"


# --- failover -------------------------------------------------------------------------------


def test_next_provider_walks_the_candidates() -> None:
    decision = RouteDecision("r", ("a", "b", "c"))
    assert next_provider(decision, []) == "a"
    assert next_provider(decision, {"a"}) == "b"
    assert next_provider(decision, {"a", "b"}) == "c"
    assert next_provider(decision, {"a", "b", "c"}) is None
    assert next_provider(decision, {"a"}, healthy={"c"}) == "c"
    assert next_provider(decision, {"a"}, healthy=set()) == "b"


# --- properties -----------------------------------------------------------------------------

_names = [f"p{i}" for i in range(6)]


@given(weights=st.lists(st.integers(1, 10), min_size=1, max_size=5), cycles=st.integers(1, 4))
def test_weighted_shares_are_exact_over_every_window_of_total_weight(
    weights: list[int], cycles: int
) -> None:
    names = _names[: len(weights)]
    router = Router([route(*zip(names, weights, strict=True))], names)
    total = sum(weights)
    firsts = [candidates(router.route(msg()))[0] for _ in range(total * cycles + total)]
    for start in range(len(firsts) - total + 1):
        window = Counter(firsts[start : start + total])
        assert window == dict(zip(names, weights, strict=True)), start


@given(
    weights=st.lists(st.integers(1, 10), min_size=2, max_size=6),
    healthy=st.sets(st.sampled_from(_names), min_size=1),
)
def test_shares_stay_proportional_among_the_healthy(weights: list[int], healthy: set[str]) -> None:
    names = _names[: len(weights)]
    up = [(n, w) for n, w in zip(names, weights, strict=True) if n in healthy]
    if not up:
        return
    router = Router([route(*zip(names, weights, strict=True))], names)
    total = sum(w for _, w in up)
    firsts = Counter(candidates(router.route(msg(), healthy=healthy))[0] for _ in range(total * 3))
    assert firsts == {n: 3 * w for n, w in up}


_target = st.tuples(st.sampled_from(_names), st.none() | st.integers(1, 5))


@given(
    targets=st.lists(_target, min_size=1, max_size=6, unique_by=lambda t: t[0]),
    healthy=st.sets(st.sampled_from(_names)),
    rounds=st.integers(1, 5),
    healthy_at_failover=st.sets(st.sampled_from(_names)),
)
def test_every_candidate_is_tried_exactly_once_on_failover(
    targets: list[tuple[str, int | None]],
    healthy: set[str],
    rounds: int,
    healthy_at_failover: set[str],
) -> None:
    providers = [n if w is None else (n, w) for n, w in targets]
    names = [n for n, _ in targets]
    router = Router([route(*providers)], _names)
    for _ in range(rounds):
        decision = router.route(msg(), healthy=healthy)
        assert sorted(candidates(decision)) == sorted(names)  # none dropped, none repeated
        # Healthy before unhealthy.
        flags = [name in healthy for name in candidates(decision)]
        assert flags == sorted(flags, reverse=True)
        assert isinstance(decision, RouteDecision)
        tried: list[str] = []
        while (name := next_provider(decision, tried, healthy_at_failover)) is not None:
            assert name not in tried
            tried.append(name)
            assert len(tried) <= len(names)
        assert sorted(tried) == sorted(names)


def test_cached_health_reuses_an_answer_for_its_ttl_only() -> None:
    now = [0.0]
    asked: list[str] = []
    up = {"a"}

    def healthy(name: str) -> bool:
        asked.append(name)
        return name in up

    cached = CachedHealth(healthy, ttl=0.1, clock=lambda: now[0])
    assert [cached("a"), cached("b"), cached("a")] == [True, False, True]
    assert asked == ["a", "b"]
    up.clear()
    now[0] = 0.05
    assert cached("a") is True  # still the answer from time 0
    now[0] = 0.1
    assert cached("a") is False  # expired: asked again
    assert asked == ["a", "b", "a"]
