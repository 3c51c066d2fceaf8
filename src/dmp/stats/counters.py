"""The adoption counters checked against, or rebuilt from, a full recount (system jobs)."""

from __future__ import annotations

from dmp.records import database, stats
from dmp.runtime import Runtime


def verify_counters(rt: Runtime) -> list[str]:
    """Compare the counters with a full recount; the differences, if any, in words."""
    with database.snapshot(rt.engine) as conn:  # counters and recount from one snapshot
        counted = stats.read_counters(conn, None, None, None)
        recounted = stats.recount(conn)
    problems: list[str] = []
    if counted["totals"] != recounted["totals"]:
        problems.append("record totals per département differ from a recount")
    for key in ("openings", "closures", "documents", "accesses"):
        if sorted(counted[key]) != sorted(recounted[key]):
            problems.append(f"{key} counters differ from a recount")
    return problems


def rebuild_counters(rt: Runtime) -> None:
    """Recompute every counter from the base tables (after an upgrade or a repair)."""
    with rt.engine.begin() as conn:
        stats.rebuild(conn)


def fold_pending(rt: Runtime, batch: int = 10_000) -> int:
    """Fold the pending document and access counts present when it starts into the counters
    (each batch in its own transaction, exactly once); returns how many pending rows were
    folded. The server runs it
    in the background (``DMP_STATS_FOLD_SECONDS``); reads never depend on it."""
    total = 0
    with rt.engine.connect() as conn:
        waiting = stats.pending_rows(conn)
    # Rows added meanwhile wait for the next round: the loop ends even under a steady stream.
    for _ in range(waiting // batch + 1):
        with rt.engine.begin() as conn:
            n = stats.fold_pending(conn, batch)
        total += n
        if n < batch:
            break
    return total
