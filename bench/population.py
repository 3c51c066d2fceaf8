"""A synthetic national population, bulk-loaded (the benchmark's test data; all fictional).

Loading a million patients through the gate would take days (each opening and deposit is a
transaction with its audit event); this loader writes the same rows the gate would write, in
bulk: COPY on PostgreSQL, executemany on SQLite. It keeps every invariant the product checks:

- each patient has a real data key, wrapped by the key ring's key-encryption key, and every
  document's content is sealed with it (AES-256-GCM, bound to patient and content ids), so a
  retrieval decrypts exactly as it does for a document deposited through the API;
- each patient's audit chain holds one event per action the population implies (opening, each
  consent, each block, each deposit), MACed with the ring's audit key, with its head row: `dmp
  audit verify` passes;
- the adoption counters are rebuilt from the rows afterwards: `dmp stats --verify` passes.

The shape: documents per patient are long-tailed (most records hold a few, some hundreds);
professionals of every profession of the habilitation matrix, in structures of several kinds;
each patient has a GP (médecin traitant) with consent, a few other professionals with consent,
some blocked ones, a care team for some; a share of documents is masked from professionals or
held back from the patient. Whatever the size, the same seed gives the same population.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import random
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dmp.access import audit
from dmp.auth.actors import patient_pseudonym
from dmp.crypto import envelope
from dmp.domain.codes import TYPE_TO_CLASS
from dmp.domain.geo import geography
from dmp.domain.ins import OID_TEST, Ins, make_ins_value
from dmp.records import database, schema
from dmp.runtime import Runtime
from dmp.stats import counters

CDA_FORMAT = "urn:ihe:iti:xds-sd:text:2008"
START = datetime(2021, 1, 1, tzinfo=UTC)

# (profession code, pharmacist section, specialty, share of the professionals)
PROFESSIONS: list[tuple[str, str | None, str | None, float]] = [
    ("10", None, "SM54", 0.20),  # general practitioners
    ("10", None, "SM04", 0.05),  # cardiologists
    ("10", None, "SM44", 0.05),  # radiologists
    ("21", None, None, 0.10),
    ("21", "H", None, 0.02),
    ("60", None, None, 0.22),
    ("69", None, None, 0.01),
    ("40", None, None, 0.06),
    ("50", None, None, 0.03),
    ("70", None, None, 0.10),
    ("80", None, None, 0.02),
    ("91", None, None, 0.02),
    ("92", None, None, 0.005),
    ("94", None, None, 0.005),
    ("95", None, None, 0.005),
    ("96", None, None, 0.005),
    ("26", None, None, 0.01),
    ("28", None, None, 0.01),
    ("86", None, None, 0.01),
    ("98", None, None, 0.01),
]
# The matrix's social-sector codes (SOC-ASS, SOC-COORD) do not fit the directory's 4-character
# profession column: left out until the directory stores them (noted in docs/performance.md).
STRUCTURE_KINDS = [("SA01", 0.1), ("SA33", 0.3), ("SA07", 0.6)]  # hospital, pharmacy, practice

# Document types deposited, with weights (a record is mostly reports, prescriptions, biology).
DOC_TYPES: list[tuple[str, str, int]] = [
    ("11502-2", "Compte rendu d'examens biologiques", 25),
    ("57833-6", "Prescription de produits de santé", 20),
    ("11488-4", "Compte rendu de consultation", 15),
    ("18748-4", "Compte rendu d'imagerie médicale", 10),
    ("34112-3", "Compte rendu hospitalier", 8),
    ("11490-0", "Lettre de liaison à la sortie", 6),
    ("60593-1", "Dispensation médicamenteuse", 6),
    ("60591-5", "Synthèse médicale", 5),
    ("11369-6", "Historique des vaccinations", 3),
    ("REMB", "Données de remboursement", 2),
]
CHANNELS = ["pharmacy", "online", "insurer_desk", "health_facility", "professional"]
CHANNEL_WEIGHTS = [39, 39, 18, 2, 2]


def ins_value(i: int) -> str:
    """The fictional INS of patient number ``i`` (test OID; valid control key)."""
    return make_ins_value(f"{1 + i % 2}{i // 2 + 990_000_000_000:012d}")


def cda(ins: str, size: int) -> bytes:
    """A fictional CDA R2 document about this patient, padded with narrative to ``size``."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3">'
        '<realmCode code="FR"/><typeId root="2.16.840.1.113883.1.3" extension="POCD_HD000040"/>'
        '<code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/>'
        "<title>Compte rendu d'examens biologiques</title>"
        '<effectiveTime value="20260101120000+0100"/>'
        '<confidentialityCode code="N" codeSystem="2.16.840.1.113883.5.25"/>'
        f'<recordTarget><patientRole><id root="{OID_TEST}" extension="{ins}"/>'
        "<patient><name><given>Fictif</given><family>BANC</family></name></patient>"
        "</patientRole></recordTarget>"
        '<documentationOf><serviceEvent><effectiveTime><low value="20260101120000+0100"/>'
        "</effectiveTime></serviceEvent></documentationOf>"
        "<component><structuredBody><component><section><title>Résultats</title><text>"
    )
    tail = "</text></section></component></structuredBody></component></ClinicalDocument>\n"
    line = "Glycémie à jeun : 5,1 mmol/L (valeurs de référence 4,1 - 6,1). Document fictif.\n"
    body = line * max(1, (size - len(head) - len(tail)) // len(line))
    return (head + body + tail).encode("utf-8")


@dataclass
class Professional:
    id_nat_ps: str
    profession: str
    section: str | None
    specialty: str | None
    structure_id: str
    structure_kind: str


@dataclass
class Manifest:
    """What the workloads need to know about the population (written beside the data)."""

    patients: int
    documents: int = 0
    seconds: float = 0.0
    # W1: (patient number, professional with consent)
    consultations: list[tuple[int, str]] = field(default_factory=list)
    # W2: (patient number, professional who may deposit)
    publications: list[tuple[int, str]] = field(default_factory=list)
    # W3: (patient number, professional with consent, document FHIR id)
    retrievals: list[tuple[int, str, str]] = field(default_factory=list)
    professionals: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=1))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        raw = json.loads(path.read_text())
        m = cls(raw["patients"])
        m.__dict__.update(raw)
        m.consultations = [tuple(x) for x in raw["consultations"]]  # type: ignore[misc]
        m.publications = [tuple(x) for x in raw["publications"]]  # type: ignore[misc]
        m.retrievals = [tuple(x) for x in raw["retrievals"]]  # type: ignore[misc]
        return m


class Progress:
    """A progress bar on stderr: done/total, rate and time left."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.start, self.last = total, label, time.monotonic(), 0.0

    def update(self, done: int, extra: str = "") -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else 0.0
        width = 30
        filled = int(width * done / max(1, self.total))
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(
            f"\r{self.label} [{bar}] {done:,}/{self.total:,} {rate:,.0f}/s "
            f"{elapsed:,.0f}s elapsed, {left:,.0f}s left {extra}   "
        )
        if done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Writer:
    """Rows into tables: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"

    def write(self, conn: sa.Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        if not self.pg:
            conn.execute(table.insert(), list(rows))
            return
        names = list(rows[0])
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cur.copy(f"COPY {table.name} ({', '.join(names)}) FROM STDIN") as copy:
            for r in rows:
                copy.write_row(tuple(r[n] for n in names))


def _long_tail(rng: random.Random, mean: float) -> int:
    """Documents in one record: a Pareto tail (most records small, a few very large)."""
    alpha = 1.6
    xm = mean * (alpha - 1) / alpha
    return min(2000, int(xm * rng.paretovariate(alpha)))


def directory(rt: Runtime, rng: random.Random, count: int) -> list[Professional]:
    """Structures and professionals of every profession, in the directory tables."""
    now = rt.clock.now()
    deps = [d for d in geography().departements.values() if d.population > 0]
    n_struct = max(10, count // 4)
    structs = []
    for s in range(n_struct):
        kind = rng.choices([k for k, _ in STRUCTURE_KINDS], [w for _, w in STRUCTURE_KINDS])[0]
        dep = rng.choice(deps).code
        structs.append(
            {
                "id": f"BS{s:08d}",
                "name": f"Structure fictive {s}",
                "finess": None,
                "siret": None,
                "sector_code": kind,
                "sector_label": None,
                "commune": None,
                "departement": dep,
                "updated_at": now,
            }
        )
    pros: list[Professional] = []
    shares = [p[3] for p in PROFESSIONS]
    for i in range(count):
        # Every profession at least once, then by share.
        prof, section, spec, _ = (
            PROFESSIONS[i] if i < len(PROFESSIONS) else rng.choices(PROFESSIONS, shares)[0]
        )
        st = structs[i % n_struct]
        pros.append(
            Professional(
                f"8BENCH{i:08d}", prof, section, spec, str(st["id"]), str(st["sector_code"])
            )
        )
    with rt.engine.begin() as conn:
        w = Writer(rt.engine)
        w.write(conn, schema.structures, structs)
        w.write(
            conn,
            schema.professionals,
            [
                {
                    "id_nat_ps": p.id_nat_ps,
                    "family_name": "BANC",
                    "given_name": f"Pro {n}",
                    "profession_code": p.profession,
                    "profession_label": None,
                    "specialty_code": p.specialty,
                    "specialty_label": None,
                    "pharmacist_section": p.section,
                    "updated_at": now,
                }
                for n, p in enumerate(pros)
            ],
        )
        w.write(
            conn,
            schema.professional_activities,
            [
                {"id_nat_ps": p.id_nat_ps, "structure_id": p.structure_id, "mode": None}
                for p in pros
            ],
        )
    return pros


class Chain:
    """One patient's audit chain as the gate would have written it."""

    def __init__(self, patient_id: str, key: audit.AuditKey, rng: random.Random) -> None:
        self.patient_id, self.key, self.rng = patient_id, key, rng
        self.seq, self.prev = 0, "0" * 64
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        at: datetime,
        actor_kind: str,
        actor_id: str,
        structure: str | None,
        action: str,
        reason: str,
        target: str | None = None,
    ) -> None:
        self.seq += 1
        event: dict[str, Any] = {
            "chain_id": self.patient_id,
            "at": at,
            "patient_id": self.patient_id,
            "actor_kind": actor_kind,
            "actor_id": actor_id,
            "structure_id": structure,
            "purpose": "normal",
            "outcome": "success",
            "reason": reason,
            "request_id": None,
            "client_addr": None,
            "key_id": self.key.key_id,
            "seq": self.seq,
            "event_id": f"{self.rng.getrandbits(128):032x}",
            "action": action,
            "target": target,
            "targets": None,
            "prev_hash": self.prev,
        }
        event["hash"] = self.prev = audit.event_mac(event, self.key.secret)
        self.rows.append(event)


@dataclass
class _Context:
    """What every batch needs (set before the worker processes fork)."""

    url: str
    seed: int
    gps: list[Professional]
    readers: list[Professional]
    authors: list[Professional]
    deps: list[Any]
    weights: list[int]
    kek_id: str
    kek: bytes
    akey: audit.AuditKey
    span: int
    now: datetime
    mean_documents: float
    content_bytes: int
    large_patients: int
    large_bytes: int
    sample_every: int
    patients: int
    batch: int
    token_secret: bytes = b""  # the holder's pseudonym in the trail (auth.actors)


_CTX: _Context | None = None
_ENGINE: sa.Engine | None = None
_TABLES = (
    "patients",
    "records",
    "patient_keys",
    "professional_permissions",
    "care_team",
    "documents",
    "document_contents",
    "audit_events",
    "audit_heads",
)


def _batch(first: int) -> tuple[int, int, Manifest]:
    """Generate and write one batch of patients (in a worker process); what the manifest
    needs back."""
    global _ENGINE
    c = _CTX
    assert c is not None
    if _ENGINE is None:
        _ENGINE = database.make_engine(c.url, pool_size=1)
    rng = random.Random(f"{c.seed}:{first}")
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in _TABLES}
    part = Manifest(0)
    docs = 0
    last = min(c.patients, first + c.batch)
    for i in range(first, last):
        size = c.large_bytes if i < c.large_patients else c.content_bytes
        docs += _patient(i, rows, rng, c, size, part)
    writer = Writer(_ENGINE)
    with _ENGINE.begin() as conn:
        for name, table_rows in rows.items():
            writer.write(conn, schema.metadata.tables[name], table_rows)
    return last - first, docs, part


def build(
    rt: Runtime,
    patients: int,
    *,
    mean_documents: float = 10.0,
    seed: int = 37,
    content_bytes: int = 1024,
    large_patients: int = 200,
    large_bytes: int = 30 * 1024,
    batch: int = 1000,
    samples: int = 20_000,
    processes: int = 2,
) -> Manifest:
    """Load ``patients`` records into an empty database; return the workloads' manifest.

    Batches are generated and written by ``processes`` worker processes, each with its own
    connection. The first ``large_patients`` patients' documents carry ``large_bytes`` of
    content (the retrieval workload reads those); the others ``content_bytes``."""
    global _CTX, _ENGINE
    if _ENGINE is not None:  # a previous build in this process, maybe on another database
        _ENGINE.dispose()
        _ENGINE = None
    t0 = time.monotonic()
    rng = random.Random(seed)
    pros = directory(rt, rng, max(len(PROFESSIONS), patients // 500))
    _CTX = _Context(
        url=rt.settings.effective_database_url,
        seed=seed,
        gps=[p for p in pros if p.specialty == "SM54"],
        readers=[p for p in pros if p.profession in ("10", "21", "60", "40", "50", "70")],
        authors=[p for p in pros if p.profession == "10"],
        deps=[d for d in geography().departements.values() if d.population > 0],
        weights=[d.population for d in geography().departements.values() if d.population > 0],
        kek_id=rt.keyring.active_kek_id,
        kek=rt.kek(rt.keyring.active_kek_id),
        akey=rt.audit_key,
        span=int((rt.clock.now() - START).total_seconds()),
        now=rt.clock.now(),
        mean_documents=mean_documents,
        content_bytes=content_bytes,
        large_patients=large_patients,
        large_bytes=large_bytes,
        sample_every=max(1, patients // samples),
        patients=patients,
        batch=batch,
        token_secret=rt.token_secret,
    )
    manifest = Manifest(patients)
    manifest.professionals = {
        p.id_nat_ps: {"structure": p.structure_id, "profession": p.profession} for p in pros
    }
    progress = Progress(patients, "population")
    done = docs_total = 0
    sqlite = rt.engine.dialect.name == "sqlite"
    starts = range(0, patients, batch)
    if sqlite or processes <= 1:  # one writer at a time on SQLite
        results: Iterator[tuple[int, int, Manifest]] = map(_batch, starts)
        pool = None
    else:
        pool = multiprocessing.get_context("fork").Pool(processes)
        results = pool.imap(_batch, starts)
    try:
        for n, docs, part in results:
            done += n
            docs_total += docs
            manifest.consultations += part.consultations
            manifest.publications += part.publications
            manifest.retrievals += part.retrievals
            progress.update(done, f"{docs_total:,} documents")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    sys.stderr.write("rebuilding the adoption counters from the rows...\n")
    counters.rebuild_counters(rt)
    if not sqlite:
        with rt.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
    manifest.documents = docs_total
    manifest.seconds = round(time.monotonic() - t0, 1)
    return manifest


def _patient(
    i: int,
    rows: dict[str, list[dict[str, Any]]],
    rng: random.Random,
    c: _Context,
    content_bytes: int,
    manifest: Manifest,
) -> int:
    pid = f"{rng.getrandbits(128):032x}"
    ins = ins_value(i)
    # The holder acts under a pseudonym, as the service writes it (never the INS).
    holder = patient_pseudonym(c.token_secret, Ins(OID_TEST, ins))
    dep = rng.choices(c.deps, c.weights)[0]
    opened = START + timedelta(seconds=rng.randrange(0, c.span - 86400 * 30))
    commune = dep.code + "001" if len(dep.code) == 2 else dep.code + "01"
    gp = rng.choice(c.gps)
    rows["patients"].append(
        {
            "id": pid,
            "ins_oid": OID_TEST,
            "ins_value": ins,
            "birth_family_name": "BANC",
            "used_name": None,
            "given_names": "Fictif",
            "sex": "M" if i % 2 == 0 else "F",
            "birth_date": date(1930 + i % 90, 1 + i % 12, 1 + i % 28),
            "birth_place_code": None,
            "residence_commune": commune,
            "departement": dep.code,
            "created_at": opened,
        }
    )
    rows["records"].append(
        {
            "patient_id": pid,
            "status": "active",
            "channel": rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
            "opened_at": opened,
            "opened_by_kind": "desk_agent",
            "opened_by": "desk-bench",
            "opened_by_structure": None,
            "initial_consent_at": opened,
            "initial_consent_collected_by": "desk-bench",
            "closed_at": None,
            "closure_reason": None,
            "closed_by": None,
            "oppose_bris_de_glace": rng.random() < 0.03,
            "oppose_centre_15": rng.random() < 0.02,
            "mask_all": False,
            "medecin_traitant": gp.id_nat_ps,
            "is_minor": False,
            "activated_at": opened if rng.random() < 0.35 else None,
        }
    )
    chain = Chain(pid, c.akey, rng)
    chain.add(opened, "desk_agent", "desk-bench", None, "record.open", "ALLOW_OPEN")
    data_key = envelope.new_data_key()
    key_id = f"{rng.getrandbits(128):032x}"
    rows["patient_keys"].append(
        {
            "patient_id": pid,
            "key_id": key_id,
            "kek_id": c.kek_id,
            "wrapped": envelope.wrap_data_key(c.kek, data_key, pid),
            "created_at": opened,
            "shredded_at": None,
        }
    )
    # Consents: the GP and a few others; some blocked professionals.
    consented = {gp.id_nat_ps: gp}
    for _ in range(rng.randrange(0, 4)):
        p = rng.choice(c.readers)
        consented[p.id_nat_ps] = p
    t = opened
    for p in consented.values():
        t += timedelta(minutes=1)
        rows["professional_permissions"].append(
            {
                "patient_id": pid,
                "id_nat_ps": p.id_nat_ps,
                "consented_at": t,
                "consent_declared_by": p.id_nat_ps,
                "blocked_at": None,
            }
        )
        chain.add(
            t,
            "professional",
            p.id_nat_ps,
            p.structure_id,
            "consent.declare",
            "ALLOW_CONSENT_DECLARATION",
            p.id_nat_ps,
        )
    if rng.random() < 0.05:
        p = rng.choice(c.readers)
        if p.id_nat_ps not in consented:
            t += timedelta(minutes=1)
            rows["professional_permissions"].append(
                {
                    "patient_id": pid,
                    "id_nat_ps": p.id_nat_ps,
                    "consented_at": None,
                    "consent_declared_by": None,
                    "blocked_at": t,
                }
            )
            chain.add(
                t,
                "patient",
                holder,
                None,
                "permission.block",
                "ALLOW_HOLDER",
                p.id_nat_ps,
            )
    if rng.random() < 0.1:
        p = rng.choice(c.readers)
        t += timedelta(minutes=1)
        rows["care_team"].append(
            {
                "patient_id": pid,
                "id_nat_ps": p.id_nat_ps,
                "declared_at": t,
                "declared_by": holder,
            }
        )
        chain.add(t, "patient", holder, None, "care_team.declare", "ALLOW_HOLDER", p.id_nat_ps)
    # Documents, oldest first (the chain is in time order).
    n_docs = _long_tail(rng, c.mean_documents)
    age = int((c.now - t).total_seconds())
    times = sorted(t + timedelta(seconds=rng.randrange(60, max(120, age))) for _ in range(n_docs))
    content = cda(ins, content_bytes)
    sha256 = hashlib.sha256(content).hexdigest()
    sha1 = hashlib.sha1(content).hexdigest()  # noqa: S324 - XDS hash attribute, not security
    first_doc: str | None = None
    for at in times:
        type_code, title, _ = rng.choices(DOC_TYPES, [w for *_, w in DOC_TYPES])[0]
        author = gp if rng.random() < 0.4 else rng.choice(c.authors)
        logical = f"{rng.getrandbits(128):032x}"
        content_id = f"{rng.getrandbits(128):032x}"
        service = at - timedelta(days=rng.randrange(0, 30))
        rows["documents"].append(
            {
                "patient_id": pid,
                "id": f"{rng.getrandbits(128):032x}",
                "logical_id": logical,
                "version": 1,
                "unique_id": f"2.25.{int(logical, 16)}",
                "status": "current",
                "type_code": type_code,
                "class_code": TYPE_TO_CLASS[type_code],
                "format_code": CDA_FORMAT,
                "mime_type": "text/xml",
                "title": title,
                "language": "fr-FR",
                "creation_time": at,
                "service_start": service,
                "service_stop": at,
                "facility_type": None,
                "practice_setting": None,
                "author_kind": "professional",
                "author_id": author.id_nat_ps,
                "author_structure": author.structure_id,
                "confidentiality": "N",
                "masked_ps": rng.random() < 0.02,
                "invisible_patient": False,
                "invisible_patient_until": None,
                "invisible_representatives": False,
                "size": len(content),
                "sha256": sha256,
                "sha1": sha1,
                "content_id": content_id,
                "replaces_id": None,
                "submitted_at": at,
                "latest": True,
                "version_at": at,
            }
        )
        sealed = envelope.seal_chunks(data_key, content, envelope.content_context(pid, content_id))
        for k, chunk in enumerate(sealed):
            rows["document_contents"].append(
                {
                    "patient_id": pid,
                    "content_id": content_id,
                    "chunk": k,
                    "key_id": key_id,
                    "sealed": chunk,
                }
            )
        chain.add(
            at,
            "professional",
            author.id_nat_ps,
            author.structure_id,
            "document.create",
            "ALLOW_CARE_DEPOSIT",
            logical,
        )
        if (
            first_doc is None
            and not rows["documents"][-1]["masked_ps"]
            and type_code in ("11502-2", "57833-6", "11488-4")
        ):
            first_doc = logical
    rows["audit_events"].extend(chain.rows)
    rows["audit_heads"].append({"chain_id": pid, "seq": chain.seq, "last_hash": chain.prev})
    if i % c.sample_every == 0:
        manifest.consultations.append((i, gp.id_nat_ps))
        manifest.publications.append((i, gp.id_nat_ps))
    if first_doc is not None and content_bytes > 4096:
        manifest.retrievals.append((i, gp.id_nat_ps, f"{pid}.{first_doc}"))
    return n_docs
