"""Ratios paired round by round: the benchmarks' one way of comparing two contenders.

Every round measures each contender once, back to back, and the ratio is taken inside the round;
the figure reported is the median of those per-round ratios. A busy machine then slows both
sides of a ratio alike, instead of the best round of one side being divided by the best round of
the other (which may come from a different, quieter moment). The spread (lowest and highest
per-round ratio) is printed with it, so a noisy run shows as one.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rounds:
    """Each contender's measurement, one per round, in the order the rounds ran."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.values[name])

    def ratios(self, top: str, bottom: str) -> list[float]:
        return [a / b for a, b in zip(self.values[top], self.values[bottom], strict=True)]

    def ratio(self, top: str, bottom: str) -> float:
        """The median over the rounds of ``top / bottom`` within each round."""
        return statistics.median(self.ratios(top, bottom))

    def describe(self, top: str, bottom: str) -> str:
        """``"2.31x (rounds 2.20-2.45)"``: the median ratio and its spread."""
        ratios = self.ratios(top, bottom)
        return (f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}, "
                f"n={len(ratios)})")


def measure(contenders: Mapping[str, Callable[[], float]], rounds: int, *,
            alternate: bool = False) -> Rounds:
    """Run every contender once per round, in turn; each returns its own figure for the round
    (a time or a rate: the caller knows which way its ratio reads). ``alternate`` runs every
    other round in reverse order, so that going first (a cold machine, a warm cache, or what the
    one before left behind) favours no contender."""
    result = Rounds({name: [] for name in contenders})
    for number in range(max(1, rounds)):
        order = list(contenders.items())
        if alternate and number % 2:
            order.reverse()
        for name, run in order:
            result.values[name].append(run())
    return result


def median_ratio(tops: Sequence[float], bottoms: Sequence[float]) -> float:
    """The median of ``tops[i] / bottoms[i]``, for figures already paired by round."""
    return statistics.median(a / b for a, b in zip(tops, bottoms, strict=True))
