"""Calendar arithmetic the rules need."""

from __future__ import annotations

from datetime import datetime


def add_years(at: datetime, years: int) -> datetime:
    """The same day ``years`` later (29 February gives 28 February)."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return at.replace(year=at.year + years, day=28)
