"""The directory of health professionals and structures (Annuaire Santé extract)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from dmp.records.schema import professional_activities, professionals, structures
from dmp.records.sql import upsert
from dmp.records.types import ProfessionalRow


def upsert_structures(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        upsert(conn, structures, rows, key=("id",), update=[k for k in rows[0] if k != "id"])


def upsert_professionals(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        cols = [k for k in rows[0] if k != "id_nat_ps"]
        upsert(conn, professionals, rows, key=("id_nat_ps",), update=cols)


def upsert_activities(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        upsert(
            conn, professional_activities, rows, key=("id_nat_ps", "structure_id"), update=["mode"]
        )


def get_professional(conn: Connection, id_nat_ps: str) -> ProfessionalRow | None:
    return get_professionals(conn, {id_nat_ps}).get(id_nat_ps)


def get_professionals(conn: Connection, ids: set[str]) -> dict[str, ProfessionalRow]:
    """Professionals by idNatPS, with their structures: two statements per thousand ids."""
    p = professionals.c
    a = professional_activities.c
    out: dict[str, ProfessionalRow] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        rows = conn.execute(
            sa.select(
                p.id_nat_ps,
                p.family_name,
                p.given_name,
                p.profession_code,
                p.specialty_code,
                p.pharmacist_section,
            ).where(p.id_nat_ps.in_(chunk))
        ).all()
        structures_of: dict[str, list[str]] = {}
        for ps, sid in conn.execute(
            sa.select(a.id_nat_ps, a.structure_id)
            .where(a.id_nat_ps.in_(chunk))
            .order_by(a.id_nat_ps, a.structure_id)
        ).all():
            structures_of.setdefault(ps, []).append(sid)
        for row in rows:
            out[row.id_nat_ps] = ProfessionalRow(
                row.id_nat_ps,
                row.family_name,
                row.given_name,
                row.profession_code,
                row.specialty_code,
                row.pharmacist_section,
                tuple(structures_of.get(row.id_nat_ps, ())),
            )
    return out


def structure_sector(conn: Connection, structure_id: str) -> str | None:
    return conn.execute(
        sa.select(structures.c.sector_code).where(structures.c.id == structure_id)
    ).scalar_one_or_none()


def structure_exists(conn: Connection, structure_id: str) -> bool:
    return (
        conn.execute(sa.select(structures.c.id).where(structures.c.id == structure_id)).first()
        is not None
    )


def structure_names(conn: Connection, ids: set[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(structures.c.id, structures.c.name).where(structures.c.id.in_(ids))
    )
    return {str(r.id): str(r.name) for r in rows}


def structure_place(conn: Connection, structure_id: str) -> tuple[str, str | None] | None:
    """A structure's name and INSEE commune code (public directory data)."""
    row = conn.execute(
        sa.select(structures.c.name, structures.c.commune).where(structures.c.id == structure_id)
    ).first()
    return None if row is None else (str(row.name), row.commune)


def structure_departement(conn: Connection, structure_id: str) -> str | None:
    """The département a structure is in (public directory data)."""
    return conn.execute(
        sa.select(structures.c.departement).where(structures.c.id == structure_id)
    ).scalar_one_or_none()
