"""Actors from the directory and bearer tokens for them (operators, tests, the token endpoint)."""

from __future__ import annotations

import hashlib
import hmac

from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins, parse_ins
from dmp.errors import InvalidInput, NotAuthenticated
from dmp.identity.actor import Actor, ActorKind
from dmp.records import directory
from dmp.runtime import Runtime


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
    """The holder as an actor. Its id, written wherever the holder acts (the audit trail, the
    documents they deposit, the care team they declare), is a pseudonym: a keyed hash of the
    INS under a key derived from the key ring, so that a purged record leaves nothing in the
    trail that names its holder (the trail stays verifiable)."""
    ins = parse_ins(ins.value, ins.oid, test_mode=rt.settings.test_mode)
    return Actor(kind=ActorKind.PATIENT, id=patient_pseudonym(rt.token_secret, ins), ins=ins)


def patient_pseudonym(secret: bytes, ins: Ins) -> str:
    key = hashlib.sha256(b"dmp patient pseudonyms\x00" + secret).digest()
    mac = hmac.new(key, f"{ins.oid}|{ins.value}".encode(), hashlib.sha256).hexdigest()
    return f"patient:{mac[:32]}"


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
    if purpose is PurposeOfUse.EMERGENCY and (justification is None or patient is None):
        raise InvalidInput("an emergency token needs a justification and the patient's INS")
    from dmp.identity.tokens import issue_token  # (and JWT) loaded by the callers that need it

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
