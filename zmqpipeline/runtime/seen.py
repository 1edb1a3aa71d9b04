"""``SeenSet``: the sequence numbers of one task type seen so far (a watermark and a set),
kept by the distributor, the collector and both journals as it is."""

from __future__ import annotations

__all__ = ["SeenSet"]


class SeenSet:
    """The sequence numbers of one task type seen so far, in memory proportional to the
    ones seen out of order: every seq below :attr:`low` is seen, plus those in :attr:`above`."""

    __slots__ = ("above", "low")

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq < self.low or seq in self.above

    def add(self, seq: int) -> None:
        if seq == self.low:
            self.low += 1
            above = self.above
            while self.low in above:
                above.discard(self.low)
                self.low += 1
        elif seq > self.low:
            self.above.add(seq)
