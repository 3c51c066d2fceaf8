"""The audit trail: one writer, hash-chained per patient, verifiable.

Audit is mandatory: the event is written in the transaction of the action it records, so if the
insert fails the action fails too. Refusals are written in their own short transaction, so that
rolling back the refused request does not erase the trace of the refusal.
"""

from __future__ import annotations

import hashlib
import hmac
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection
from sqlalchemy.engine import Engine

from dmp.domain.codes import AuditAction, Outcome, PurposeOfUse
from dmp.identity.actor import Actor
from dmp.records import audit_log, database
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


@dataclass(frozen=True, slots=True)
class AuditKey:
    """The key ring's key that MACs new audit events."""

    key_id: str
    secret: bytes = field(repr=False)


def _payload(event: dict[str, Any]) -> bytes:
    fields = {
        k: v
        for k, v in event.items()
        if k != "hash"
        # Events before migration 0009 have no key_id, before 0019 no client_id; an event
        # without either is MACed as it was then.
        and not (k in ("key_id", "client_id") and v is None)
    }
    # UTC before hashing: the database stores UTC, so a clock with another offset must not
    # make the stored event disagree with its MAC.
    fields["at"] = event["at"].astimezone(UTC).isoformat(timespec="microseconds")
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def event_mac(event: dict[str, Any], secret: bytes | None) -> str:
    """HMAC-SHA-256 of the event under an audit key of the key ring; without a key, the plain
    SHA-256 of events written before the trail was keyed."""
    payload = _payload(event)
    if secret is None:
        return hashlib.sha256(payload).hexdigest()
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class EventSpec:
    """What one audit event says about the action (the rest comes from the request)."""

    action: AuditAction
    target: str | None = None
    targets: tuple[str, ...] = ()


def write_events(
    conn: Connection,
    events: list[EventSpec],
    *,
    actor: Actor,
    patient_id: str | None,
    purpose: PurposeOfUse,
    outcome: Outcome,
    reason: str,
    ctx: RequestContext,
    at: datetime,
    key: AuditKey,
    head: tuple[int, str] | None = None,
    client_id: str | None = None,
    pending: list[dict[str, Any]] | None = None,
) -> None:
    """Append events to the patient's chain (or the actor's, for events about no patient).

    With the ``head`` the facts read, the events and the moved head are written in one
    statement that checks the head did not move meanwhile; if it did (a concurrent writer of
    the same chain), or no head was read, the head is taken under its lock and the events are
    chained again after it."""
    chain_id = patient_id or actor_chain(actor)
    common = {
        "chain_id": chain_id,
        "at": at.astimezone(UTC),
        "patient_id": patient_id,
        "actor_kind": actor.kind.value,
        "actor_id": actor.id,
        "structure_id": actor.structure_id,
        "purpose": purpose.value,
        "outcome": outcome.value,
        "reason": reason,
        "request_id": ctx.request_id,
        "client_addr": ctx.client_addr,
        "key_id": key.key_id,
        "client_id": client_id,
    }
    if head is not None and audit_log.append_after(
        conn, chain_id, head[0], _chained(events, common, head, key), pending
    ):
        return
    locked = audit_log.lock_head(conn, chain_id)
    chained = _chained(events, common, locked, key)
    if not audit_log.append_after(conn, chain_id, locked[0], chained, pending):
        raise RuntimeError("the audit chain head moved while locked")  # pragma: no cover


def _chained(
    events: list[EventSpec], common: dict[str, Any], head: tuple[int, str], key: AuditKey
) -> list[dict[str, Any]]:
    seq, prev = head
    rows = []
    for spec in events:
        seq += 1
        event: dict[str, Any] = {
            **common,
            "seq": seq,
            "event_id": uuid.uuid4().hex,
            "action": spec.action.value,
            "target": spec.target,
            "targets": " ".join(spec.targets) if spec.targets else None,
            "prev_hash": prev,
        }
        event["hash"] = prev = event_mac(event, key.secret)
        rows.append(event)
    return rows


def write(
    conn: Connection,
    *,
    action: AuditAction,
    target: str | None,
    targets: tuple[str, ...] = (),
    **kwargs: Any,
) -> None:
    """Append one event (system jobs, refusals)."""
    write_events(conn, [EventSpec(action, target, targets)], **kwargs)


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
        "key_id": row.key_id,
        "client_id": row.client_id,
    }


@dataclass(frozen=True)
class AuditKeys:
    """What verification needs from the key ring: its audit keys, and whether events without a
    MAC are accepted (only for a ring upgraded from before the trail was keyed, and only before
    the first keyed event of a chain)."""

    keys: dict[str, bytes] = field(repr=False)
    accept_unkeyed: bool = False


def _check_event(row: AuditRow, keys: AuditKeys, keyed_before: bool) -> str | None:
    if row.key_id is None:
        if keyed_before or not keys.accept_unkeyed:
            return "has no MAC (written or rewritten without the key ring)"
        expected = event_mac(_row_event(row), None)
    else:
        secret = keys.keys.get(row.key_id)
        if secret is None:
            return f"its MAC key {row.key_id} is not in the key ring"
        expected = event_mac(_row_event(row), secret)
    if not hmac.compare_digest(expected, row.hash):
        return "content changed after it was written"
    return None


def _verify_range(engine: Engine, first: str, keys: AuditKeys) -> VerifyReport:
    """Check every chain whose id starts with ``first``, on one snapshot, bounded by the
    heads: the heads and the events read in chain order side by side (two index range
    scans, the events by keyset in large batches); stop at the first fault."""
    chains = events = 0
    with database.snapshot(engine) as conn:
        stream = audit_log.scan_in(conn, first)
        row = next(stream, None)
        for chain_id, head_seq, head_hash in audit_log.heads_in(conn, first):
            if row is not None and row.chain_id < chain_id:
                return VerifyReport(chains, events, _orphan(row.chain_id))
            prev, expected, keyed = audit_log.GENESIS, 1, False
            while row is not None and row.chain_id == chain_id:
                if row.seq > head_seq:
                    # Appended after the snapshot's head: not this check's.
                    row = next(stream, None)
                    continue
                fault = _event_fault(row, expected, prev, keys, keyed)
                if fault is not None:
                    return VerifyReport(chains + 1, events + expected - 1, fault)
                keyed = keyed or row.key_id is not None
                prev = row.hash
                expected += 1
                row = next(stream, None)
            count = expected - 1
            chains += 1
            events += count
            if count != head_seq or prev != head_hash:
                fault = ChainFault(
                    chain_id,
                    count + 1,
                    None,
                    f"chain ends at #{count} but {head_seq} events were written",
                )
                return VerifyReport(chains, events, fault)
        if row is not None:
            return VerifyReport(chains, events, _orphan(row.chain_id))
    return VerifyReport(chains, events, None)


def _orphan(chain_id: str) -> ChainFault:
    return ChainFault(chain_id, 1, None, "chain head record is missing")


def _event_fault(
    row: AuditRow, expected: int, prev: str, keys: AuditKeys, keyed: bool
) -> ChainFault | None:
    if row.seq != expected:
        return ChainFault(row.chain_id, expected, None, "event missing from the chain")
    if row.prev_hash != prev:
        return ChainFault(
            row.chain_id,
            row.seq,
            row.event_id,
            "does not follow the previous event (reordered or removed)",
        )
    problem = _check_event(row, keys, keyed)
    if problem is not None:
        return ChainFault(row.chain_id, row.seq, row.event_id, problem)
    return None


def _verify_range_alone(url: str, first: str, keys: AuditKeys, prepared: bool) -> VerifyReport:
    """One range in a process of its own (its own engine and snapshot)."""
    engine = database.make_engine(url, pool_size=1, prepared=prepared)
    try:
        return _verify_range(engine, first, keys)
    finally:
        engine.dispose()


# Below this many events the trail is checked in this process: starting processes would cost
# more than it saves.
PARALLEL_FROM = 200_000


def verify(
    engine: Engine, keys: AuditKeys, *, workers: int = 1, parallel_from: int = PARALLEL_FROM
) -> VerifyReport:
    """Check every chain, bounded by the heads; report the first fault in chain order.

    The trail is read in sixteen ranges of chain ids, each on one consistent snapshot (a chain
    never spans two ranges), by keyset in large batches; with ``workers`` > 1 and a trail of at
    least ``parallel_from`` events, ranges are checked by that many processes at once (the MACs
    are CPU work). Runs beside live traffic: it takes no write lock and new events do not
    disturb it (each range stops at the heads its snapshot saw)."""
    ranges = audit_log.RANGES
    reports: list[VerifyReport] = []
    if workers > 1 and _trail_size(engine) >= parallel_from:
        url = engine.url.render_as_string(hide_password=False)
        prepared = database.prepares_statements(engine)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = [
                pool.submit(_verify_range_alone, url, first, keys, prepared) for first in ranges
            ]
            reports = [f.result() for f in futures]
    else:
        for first in ranges:
            reports.append(_verify_range(engine, first, keys))
            if reports[-1].fault is not None:
                break
    chains = events = 0
    for report in reports:
        chains += report.chains
        events += report.events
        if report.fault is not None:
            return VerifyReport(chains, events, report.fault)
    return VerifyReport(chains, events, None)


def _trail_size(engine: Engine) -> int:
    with database.snapshot(engine) as conn:
        return audit_log.events_written(conn)
