"""Crash safety, short form (bench/crash.py runs the long form, >= 100 cycles): the server is
killed with SIGKILL three times during concurrent ITI-65 publications; every acknowledged
document is then present and byte-identical, none is partial or doubled, every audit chain is
intact and the statistics counters match a recount."""

from __future__ import annotations

from bench import crash

from dmp.config import Settings


def test_kill_9_during_publications_loses_nothing_acknowledged(settings: Settings) -> None:
    result = crash.run(settings, cycles=3, clients=4, min_seconds=1.0, max_seconds=2.0)
    assert result.problems == []
    assert result.acknowledged >= 20  # the clients did publish in every cycle
    assert result.acknowledged_found == result.acknowledged
    assert result.partial == 0 and result.duplicates == 0
    assert result.audit_intact and result.counters_match
    assert result.ok
