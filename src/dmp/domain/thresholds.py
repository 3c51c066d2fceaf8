"""Milestone thresholds, e.g. ``10000,50000,100000,+100000``: listed values, then every N."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from dmp.errors import ConfigurationError


@dataclass(frozen=True)
class Thresholds:
    listed: tuple[int, ...]
    every: int | None = None  # after the last listed value

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        listed: list[int] = []
        every = None
        parts = [p.strip() for p in text.split(",") if p.strip()]
        for n, part in enumerate(parts):
            try:
                if part.startswith("+"):
                    if n != len(parts) - 1:
                        raise ValueError
                    every = int(part[1:])
                    if every <= 0:
                        raise ValueError
                else:
                    listed.append(int(part))
            except ValueError:
                raise ConfigurationError(
                    f"milestones must be increasing whole numbers, optionally ending with +N "
                    f"(every N after): {text!r}"
                ) from None
        if not listed or any(b <= a for a, b in itertools.pairwise(listed)) or listed[0] <= 0:
            raise ConfigurationError(f"milestones must be increasing positive numbers: {text!r}")
        return cls(tuple(listed), every)

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int):
            return False
        if value in self.listed:
            return True
        last = self.listed[-1]
        return self.every is not None and value > last and (value - last) % self.every == 0
