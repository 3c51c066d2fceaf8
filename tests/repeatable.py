"""Hypothesis settings of the property tests that CI runs: the same examples at every run
(derandomized, no example database, so a red run can be replayed), no deadline (the machine's
speed varies) and no health check (the strategies draw from real resources and API
descriptions, slow by nature)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def repeatable(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
