"""Operator and system operations: migrations, audit verification, keys, directory, tokens.

Each runs as a named system actor and is audited, like any other access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from dmp.access import audit
from dmp.access.audit import RequestContext, VerifyReport
from dmp.access.directory_import import ImportSummary, batches
from dmp.access.runtime import Runtime
from dmp.config import Settings
from dmp.crypto import envelope
from dmp.crypto.keyring import KeyRing, load_keyring
from dmp.domain.codes import AuditAction, Outcome, PurposeOfUse
from dmp.domain.ins import Ins, parse_ins
from dmp.errors import InvalidInput, NotAuthenticated
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.identity.tokens import issue_token
from dmp.records import audit_log, database, directory, keys


def upgrade_database(settings: Settings) -> str | None:
    engine = database.make_engine(settings.effective_database_url)
    try:
        database.upgrade(engine)
        return database.current_revision(engine)
    finally:
        engine.dispose()


def _system_event(
    rt: Runtime,
    actor: Actor,
    action: AuditAction,
    target: str | None,
    patient_id: str | None = None,
) -> None:
    with rt.engine.begin() as conn:
        audit.write(
            conn,
            actor=actor,
            action=action,
            patient_id=patient_id,
            target=target,
            purpose=PurposeOfUse.NORMAL,
            outcome=Outcome.SUCCESS,
            reason="ALLOW_SYSTEM",
            ctx=RequestContext(),
            at=rt.clock.now(),
            key=rt.audit_key,
        )


def verify_audit(rt: Runtime) -> VerifyReport:
    return audit.verify(rt.engine, rt.audit_keys())


@dataclass(frozen=True)
class KeyReport:
    """Which key ids the database needs, and which of them the key ring lacks."""

    ring_path: Path
    ring_found: bool
    keks_needed: set[str]
    audit_keys_needed: set[str]
    keks_missing: set[str]
    audit_keys_missing: set[str]

    @property
    def ok(self) -> bool:
        return self.ring_found and not self.keks_missing and not self.audit_keys_missing


def _key_report(engine: Engine, path: Path, ring: KeyRing | None) -> KeyReport:
    with database.snapshot(engine) as conn:
        keks = keys.kek_ids_in_use(conn)
        audit_keys = audit_log.key_ids_in_use(conn)
    held_keks = set(ring.keks) if ring else set()
    held_audit = set(ring.audit_keys) if ring else set()
    return KeyReport(
        path, ring is not None, keks, audit_keys, keks - held_keks, audit_keys - held_audit
    )


def check_keys(rt: Runtime, *, reload: bool = True) -> KeyReport:
    """`dmp keys check` for a running service's ring."""
    if reload:
        rt.reload_keyring()
    return _key_report(rt.engine, rt.keyring.path, rt.keyring)


def check_keys_offline(settings: Settings) -> KeyReport:
    """`dmp keys check` without starting the service (it may refuse to start for lack of its
    key ring): reads the database and the ring file, if any, and changes nothing."""
    engine = database.make_engine(settings.effective_database_url)
    path = settings.effective_keyring_path
    try:
        ring = load_keyring(path) if path.exists() else None
        return _key_report(engine, path, ring)
    finally:
        engine.dispose()


def rotate_keys(rt: Runtime, *, batch: int = 500) -> tuple[str, int]:
    """Add a key-encryption key, make it active, re-wrap every data key with it.

    Content is not re-encrypted: only the small wrapped data keys change. The old KEKs stay in
    the ring (a backup of the database taken before rotation still needs them).
    """
    ring = rt.keyring.with_new_kek()
    ring.save()
    rt.reload_keyring()
    new_id = rt.keyring.active_kek_id
    new_kek = rt.keyring.kek(new_id)
    count = 0
    with rt.engine.begin() as conn:
        for rows in keys.keys_not_wrapped_by(conn, new_id, batch):
            updates: list[dict[str, object]] = []
            for patient_id, key_id, kek_id, wrapped in rows:
                data_key = envelope.unwrap_data_key(rt.kek(kek_id), wrapped, patient_id)
                updates.append(
                    {
                        "p": patient_id,
                        "k": key_id,
                        "kek": new_id,
                        "w": envelope.wrap_data_key(new_kek, data_key, patient_id),
                    }
                )
            keys.rewrap(conn, updates)
            count += len(updates)
    _system_event(rt, system_actor("keys-rotate"), AuditAction.KEYS_ROTATE, new_id)
    return new_id, count


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
    _system_event(
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


def professional_actor(rt: Runtime, id_nat_ps: str, structure_id: str | None = None) -> Actor:
    """The actor for a professional, with profession and specialty from the directory.

    A professional unknown to the directory, or a structure they do not work in, is refused.
    """
    with rt.engine.connect() as conn:
        pro = directory.get_professional(conn, id_nat_ps)
        if pro is None:
            raise NotAuthenticated("this professional is not in the directory")
        if structure_id is None:
            structure_id = pro.structure_ids[0] if pro.structure_ids else None
        elif structure_id not in pro.structure_ids:
            raise NotAuthenticated("this professional does not work in that structure")
        sector = directory.structure_sector(conn, structure_id) if structure_id else None
    return Actor(
        kind=ActorKind.PROFESSIONAL,
        id=pro.id_nat_ps,
        structure_id=structure_id,
        profession=pro.profession_code,
        specialty=pro.specialty_code,
        pharmacist_section=pro.pharmacist_section,
        structure_kind=sector,
    )


def patient_actor(rt: Runtime, ins: Ins) -> Actor:
    ins = parse_ins(ins.value, ins.oid, test_mode=rt.settings.test_mode)
    return Actor(kind=ActorKind.PATIENT, id=f"patient:{ins.value}", ins=ins)


def desk_actor(agent_id: str, structure_id: str) -> Actor:
    return Actor(kind=ActorKind.DESK_AGENT, id=agent_id, structure_id=structure_id)


def token_for(
    rt: Runtime,
    actor: Actor,
    ttl_seconds: int | None = None,
    *,
    purpose: PurposeOfUse = PurposeOfUse.NORMAL,
    justification: str | None = None,
    patient: Ins | None = None,
) -> str:
    """A bearer token for one actor. An emergency (bris de glace) token carries its
    justification and is bound to one patient, as a SMART client's is."""
    justification = (justification or "").strip() or None
    if purpose is PurposeOfUse.BRIS_DE_GLACE and (justification is None or patient is None):
        raise InvalidInput("an emergency token needs a justification and the patient's INS")
    if patient is not None:
        patient = parse_ins(patient.value, patient.oid, test_mode=rt.settings.test_mode)
    return issue_token(
        actor,
        rt.token_secret,
        now=rt.clock.now(),
        ttl_seconds=ttl_seconds or rt.settings.token_ttl_seconds,
        purpose=purpose.value if purpose is not PurposeOfUse.NORMAL else None,
        justification=justification,
        patient=patient,
    )
