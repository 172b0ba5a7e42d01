"""Small helpers every benchmark shares: repeated timing with medians, and the printed table.

Benchmarks report; they never pass or fail. Each figure is the median of several runs because
the machines this runs on are shared and noisy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence


def rate(fn: Callable[[], object], *, count: int, repeats: int = 5) -> float:
    """Median calls per second of ``fn`` over ``repeats`` runs of ``count`` calls."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()  # wall-clock: measuring elapsed time, not a timer
        for _ in range(count):
            fn()
        rates.append(count / (time.perf_counter() - start))  # wall-clock
    return statistics.median(rates)


def fmt_rate(value: float) -> str:
    return f"{value:>12,.0f}/s"


def print_table(title: str, rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for n, row in enumerate(rows):
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))
