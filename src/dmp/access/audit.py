"""The audit trail: one writer, hash-chained per patient, verifiable.

Audit is mandatory: the event is written in the transaction of the action it records, so if the
insert fails the action fails too. Refusals are written in their own short transaction, so that
rolling back the refused request does not erase the trace of the refusal.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from dmp.domain.codes import AuditAction, Outcome, PurposeOfUse
from dmp.identity.actor import Actor
from dmp.records import audit_log
from dmp.records.types import AuditRow

_ACTOR_CHAIN_NS = uuid.UUID("6f1d2c8e-6b1e-4a57-9d0e-3c1f5e2a7b90")


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Where a request came from, for the audit trail (never for logs of patient data)."""

    request_id: str | None = None
    client_addr: str | None = None


def actor_chain(actor: Actor) -> str:
    """The chain of events that concern no patient: one per actor, so no global lock."""
    return uuid.uuid5(_ACTOR_CHAIN_NS, f"{actor.kind.value}:{actor.id}").hex


def _payload(event: dict[str, Any]) -> bytes:
    fields = {k: v for k, v in event.items() if k != "hash"}
    fields["at"] = event["at"].isoformat(timespec="microseconds")
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(_payload(event)).hexdigest()


def write(
    conn: Connection,
    *,
    actor: Actor,
    action: AuditAction,
    patient_id: str | None,
    target: str | None,
    purpose: PurposeOfUse,
    targets: tuple[str, ...] = (),
    outcome: Outcome,
    reason: str,
    ctx: RequestContext,
    at: datetime,
) -> None:
    """Append one event to the patient's chain (or the actor's, for events about no patient)."""
    chain_id = patient_id or actor_chain(actor)
    seq, prev = audit_log.reserve(conn, chain_id)
    event: dict[str, Any] = {
        "chain_id": chain_id,
        "seq": seq,
        "event_id": uuid.uuid4().hex,
        "at": at,
        "patient_id": patient_id,
        "actor_kind": actor.kind.value,
        "actor_id": actor.id,
        "structure_id": actor.structure_id,
        "action": action.value,
        "target": target,
        "targets": " ".join(targets) if targets else None,
        "purpose": purpose.value,
        "outcome": outcome.value,
        "reason": reason,
        "request_id": ctx.request_id,
        "client_addr": ctx.client_addr,
        "prev_hash": prev,
    }
    event["hash"] = event_hash(event)
    audit_log.append(conn, event)


def write_denial(engine: Engine, **kwargs: Any) -> None:
    """A refusal, committed on its own (the refused request itself is rolled back)."""
    with engine.begin() as conn:
        write(conn, outcome=Outcome.DENIED, **kwargs)


@dataclass(frozen=True, slots=True)
class ChainFault:
    chain_id: str
    seq: int
    event_id: str | None
    problem: str

    def __str__(self) -> str:
        ident = f" (event {self.event_id})" if self.event_id else ""
        return f"chain {self.chain_id}, event #{self.seq}{ident}: {self.problem}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    chains: int
    events: int
    fault: ChainFault | None

    @property
    def ok(self) -> bool:
        return self.fault is None


def _row_event(row: AuditRow) -> dict[str, Any]:
    return {
        "chain_id": row.chain_id,
        "seq": row.seq,
        "event_id": row.event_id,
        "at": row.at,
        "patient_id": row.patient_id,
        "actor_kind": row.actor_kind,
        "actor_id": row.actor_id,
        "structure_id": row.structure_id,
        "action": row.action,
        "target": row.target,
        "targets": row.targets,
        "purpose": row.purpose,
        "outcome": row.outcome,
        "reason": row.reason,
        "request_id": row.request_id,
        "client_addr": row.client_addr,
        "prev_hash": row.prev_hash,
    }


def _verify_chain(
    conn: Connection, chain_id: str, head_seq: int, head_hash: str
) -> tuple[int, ChainFault | None]:
    prev = audit_log.GENESIS
    expected = 1
    for row in audit_log.chain(conn, chain_id):
        if row.seq != expected:
            return expected, ChainFault(chain_id, expected, None, "event missing from the chain")
        if row.prev_hash != prev:
            return expected, ChainFault(
                chain_id,
                row.seq,
                row.event_id,
                "does not follow the previous event (reordered or removed)",
            )
        if event_hash(_row_event(row)) != row.hash:
            return expected, ChainFault(
                chain_id, row.seq, row.event_id, "content changed after it was written"
            )
        prev = row.hash
        expected += 1
    count = expected - 1
    if count != head_seq or prev != head_hash:
        return count, ChainFault(
            chain_id, count + 1, None, f"chain ends at #{count} but {head_seq} events were written"
        )
    return count, None


def verify(engine: Engine) -> VerifyReport:
    """Check every chain; stop at the first fault."""
    chains = events = 0
    with engine.connect() as conn:
        orphans = audit_log.chain_ids_without_head(conn)
        if orphans:
            return VerifyReport(
                0, 0, ChainFault(orphans[0], 1, None, "chain head record is missing")
            )
        for chain_id, head_seq, head_hash in list(audit_log.heads(conn)):
            n, fault = _verify_chain(conn, chain_id, head_seq, head_hash)
            chains += 1
            events += n
            if fault is not None:
                return VerifyReport(chains, events, fault)
    return VerifyReport(chains, events, None)
