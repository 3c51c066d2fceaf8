"""Loading the public directory of health professionals (an RPPS extract), as a system job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dmp.access.runtime import Runtime
from dmp.domain.codes import AuditAction
from dmp.identity.actor import system_actor
from dmp.jobs.directory_import import ImportSummary, batches
from dmp.jobs.maintenance import system_event
from dmp.records import directory


def import_professionals(
    rt: Runtime, path: Path, progress: Callable[[int], None] | None = None
) -> ImportSummary:
    summary = ImportSummary()
    now = rt.clock.now()
    seen_ps: set[str] = set()
    seen_st: set[str] = set()
    for batch in batches(path, summary, progress):
        pros: dict[str, dict[str, object]] = {}
        structs: dict[str, dict[str, object]] = {}
        acts: dict[tuple[str, str], dict[str, object]] = {}
        for row in batch:
            pros[row.professional["id_nat_ps"]] = {**row.professional, "updated_at": now}
            if row.structure is not None:
                structs[row.structure["id"]] = {**row.structure, "updated_at": now}
                key = (row.professional["id_nat_ps"], row.structure["id"])
                acts[key] = {"id_nat_ps": key[0], "structure_id": key[1], "mode": row.mode}
        store_directory(rt, list(pros.values()), list(structs.values()), list(acts.values()))
        summary.loaded += len(batch)
        seen_ps.update(pros)
        seen_st.update(structs)
    summary.professionals = len(seen_ps)
    summary.structures = len(seen_st)
    system_event(
        rt,
        system_actor("directory-import"),
        AuditAction.PROFESSIONAL_IMPORT,
        f"{summary.loaded} loaded, {summary.rejected} rejected",
    )
    return summary


def store_directory(
    rt: Runtime,
    pros: list[dict[str, object]],
    structs: list[dict[str, object]],
    acts: list[dict[str, object]],
) -> None:
    """Upsert directory rows (structures first: activities refer to them)."""
    with rt.engine.begin() as conn:
        directory.upsert_structures(conn, structs)
        directory.upsert_professionals(conn, pros)
        directory.upsert_activities(conn, acts)
