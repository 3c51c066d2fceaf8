"""Loading the public directory of health professionals (an RPPS extract), as a system job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dmp.domain.codes import AuditAction
from dmp.identity.actor import system_actor
from dmp.jobs.directory_import import ImportSummary, batches
from dmp.jobs.maintenance import system_event
from dmp.records import directory
from dmp.runtime import Runtime


def import_professionals(
    rt: Runtime, path: Path, progress: Callable[[int], None] | None = None
) -> ImportSummary:
    summary = ImportSummary()
    now = rt.clock.now()
    seen_ps: set[str] = set()
    seen_st: set[str] = set()
    for number, batch in enumerate(batches(path, summary, progress), 1):
        pros: dict[str, dict[str, object]] = {}
        structs: dict[str, dict[str, object]] = {}
        acts: dict[tuple[str, str], dict[str, object]] = {}
        for row in batch:
            pros[row.professional["id_nat_ps"]] = {**row.professional, "updated_at": now}
            if row.structure is not None:
                structs[row.structure["id"]] = {**row.structure, "updated_at": now}
                key = (row.professional["id_nat_ps"], row.structure["id"])
                acts[key] = {"id_nat_ps": key[0], "structure_id": key[1], "mode": row.mode}
        store_directory(
            rt,
            list(pros.values()),
            list(structs.values()),
            list(acts.values()),
            f"batch {number}: {len(batch)} rows",
        )
        summary.loaded += len(batch)
        seen_ps.update(pros)
        seen_st.update(structs)
    summary.professionals = len(seen_ps)
    summary.structures = len(seen_st)
    system_event(
        rt,
        "directory-import",
        AuditAction.PROFESSIONAL_IMPORT,
        f"{summary.loaded} loaded, {summary.rejected} rejected",
    )
    return summary


def store_directory(
    rt: Runtime,
    pros: list[dict[str, object]],
    structs: list[dict[str, object]],
    acts: list[dict[str, object]],
    what: str = "directory rows",
) -> None:
    """Upsert directory rows (structures first: activities refer to them), with the audit
    event of the batch in its transaction (the gate's system action)."""
    access = rt.access(system_actor("directory-import"))
    with access.act_system(AuditAction.PROFESSIONAL_IMPORT, what) as op:
        directory.upsert_structures(op.conn, structs)
        directory.upsert_professionals(op.conn, pros)
        directory.upsert_activities(op.conn, acts)
