"""How instances sharing an SMSC account divide its limits (pure; :mod:`smsgw.sharing` runs it).

A provider's ``connections`` and ``rate`` are the account's: with several instances on one
Redis queue, each keeps a share of the connections and sends at the matching share of the rate,
so that together they stay within what the SMSC allows.

- :func:`connection_share`: the live instances of a provider, in the order of their ids, take
  ``total // k`` connections each, and the first ``total % k`` of them one more. Every instance
  computes the same division from the same list. With fewer connections than instances, the
  last instances get none (and do not send through that provider).
- :func:`surplus`: which of the connection slots an instance holds it gives back, when its
  share shrank or the account's total did.
- :func:`rate_share`: an instance's share of the provider's rate is its share of the
  connections it holds. Connection slots are leased (never more than ``total`` held at once),
  so the rates of all instances never add up to more than the configured rate.
- :func:`global_share`: its share of the global limit is its share of all the providers'
  capacity (their rates), by the slots it holds: the same reasoning over all providers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

__all__ = ["connection_share", "global_share", "rate_share", "surplus"]


def connection_share(instances: Iterable[str], me: str, total: int) -> int:
    """How many of ``total`` connections instance ``me`` keeps among ``instances`` (the live
    ones; ``me`` counts whether or not it is listed)."""
    ordered = sorted(set(instances) | {me})
    k = len(ordered)
    return total // k + (1 if ordered.index(me) < total % k else 0)


def surplus(held: Collection[int], target: int, total: int) -> list[int]:
    """The slots of ``held`` to give back to keep ``target`` of slots ``0 .. total - 1``:
    first those no longer in the account (``>= total``), then the highest ones."""
    gone = sorted(i for i in held if i >= total)
    kept = sorted((i for i in held if i < total), reverse=True)
    extra = max(0, len(kept) - max(0, target))
    return gone + kept[:extra]


def rate_share(held: int, total: int) -> float:
    """The share of a provider's configured rate for an instance holding ``held`` of its
    ``total`` connection slots. An instance holding none cannot send through it; it gets the
    share of one slot, so that its limiter stays valid (a rate above zero)."""
    return min(1.0, max(1, held) / total)


def global_share(held: Mapping[str, tuple[int, int, float]], instances: int) -> float:
    """This instance's share of ``[rate_limit] per_second`` (the limit over all providers):
    its share of the providers' configured capacity, the sum of their rates. ``held`` maps
    each provider to (slots held here, its ``connections``, its rate). Since no more than a
    provider's slots are held at once, the shares of all instances add up to at most 1; an
    instance holding a larger part of the connections sends more, and takes more of the
    limit. One holding no slot (it sends nothing) gets one instance's even share."""
    total = sum(rate for _held, _slots, rate in held.values())
    mine = sum(rate * min(n, slots) / slots for n, slots, rate in held.values())
    if total <= 0 or mine <= 0:
        return 1.0 / max(1, instances)
    return min(1.0, mine / total)
