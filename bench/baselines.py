"""Baselines served by the same HTTP stack as dmp (dmp.server: uvicorn, same workers).

- ``hello``: FastAPI answering a constant JSON document: the ceiling of the HTTP stack.
- ``bare``: the consultation's shape with nothing of dmp: FastAPI + psycopg, one transaction
  that looks the patient and the professional's permission up, reads 20 document rows of the
  patient, and inserts one audit row. No rules, no MAC, no ORM: what a hand-written endpoint
  costs on the same data, so that dmp's figures can be read as a ratio to it. The same app
  serves the bare publication (``POST /bare/publish``: the ITI-65 Bundle W2 sends, parsed, its
  content decoded and stored with its metadata and one audit row, in one transaction) and the
  bare retrieval (``GET /bare/content``: the document's row and its stored content, and one
  audit row; no decryption, no hash check).

Both are ASGI factories for ``dmp.server.run`` (``bench.baselines:hello``); ``bare`` reads the
PostgreSQL URL from ``BENCH_BARE_DSN``.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool

AUDIT_DDL = """
CREATE TABLE IF NOT EXISTS bench_bare_audit (
    patient_id varchar(32) NOT NULL, event_id varchar(32) NOT NULL, at timestamptz NOT NULL,
    actor_id varchar(64) NOT NULL, action varchar(40) NOT NULL, targets text,
    PRIMARY KEY (patient_id, event_id))
"""

LOOKUP = """
SELECT p.id, r.status, r.medecin_traitant, pp.consented_at, pp.blocked_at
FROM patients p JOIN records r ON r.patient_id = p.id
LEFT JOIN professional_permissions pp ON pp.patient_id = p.id AND pp.id_nat_ps = %s
WHERE p.ins_oid = %s AND p.ins_value = %s
"""

PAGE = """
SELECT id, logical_id, version, unique_id, status, type_code, class_code, format_code, mime_type,
       title, creation_time, service_start, service_stop, author_id, author_structure, size,
       sha1, submitted_at
FROM documents WHERE patient_id = %s AND latest AND status = 'current' AND NOT masked_ps
ORDER BY service_start DESC, id LIMIT 20
"""

AUDIT = (
    "INSERT INTO bench_bare_audit (patient_id, event_id, at, actor_id, action, targets) "
    "VALUES (%s, %s, %s, %s, 'document.search', %s)"
)
AUDIT_ACTION = (
    "INSERT INTO bench_bare_audit (patient_id, event_id, at, actor_id, action, targets) "
    "VALUES (%s, %s, %s, %s, %s, %s)"
)
DOCUMENTS_DDL = """
CREATE TABLE IF NOT EXISTS bench_bare_documents (
    patient_id varchar(32) NOT NULL, id varchar(32) NOT NULL, unique_id varchar(128) NOT NULL,
    type_code varchar(40), title varchar(250), mime_type varchar(100) NOT NULL,
    author_id varchar(64) NOT NULL, submitted_at timestamptz NOT NULL, size integer NOT NULL,
    content bytea NOT NULL, PRIMARY KEY (patient_id, id))
"""
STORE = (
    "INSERT INTO bench_bare_documents (patient_id, id, unique_id, type_code, title, mime_type, "
    "author_id, submitted_at, size, content) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
CONTENT = """
SELECT d.logical_id, d.mime_type, c.sealed
FROM documents d JOIN document_contents c
  ON c.patient_id = d.patient_id AND c.content_id = d.content_id
WHERE d.patient_id = %s AND d.logical_id = %s AND d.latest AND NOT d.masked_ps
ORDER BY c.chunk
"""
PERMISSION = """
SELECT r.status, pp.blocked_at FROM records r
LEFT JOIN professional_permissions pp ON pp.patient_id = r.patient_id AND pp.id_nat_ps = %s
WHERE r.patient_id = %s
"""


def hello() -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/hello")
    def say_hello() -> Response:
        return Response(orjson.dumps({"hello": "world"}), media_type="application/json")

    return app


def bare() -> FastAPI:
    import psycopg

    dsn = os.environ["BENCH_BARE_DSN"]
    local = threading.local()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(AUDIT_DDL)
        conn.execute(DOCUMENTS_DDL)

    def connection() -> Any:
        conn = getattr(local, "conn", None)
        if conn is None or conn.closed:
            conn = local.conn = psycopg.connect(dsn)
        return conn

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/bare")
    def consult(oid: str, ins: str, ps: str) -> Response:
        conn = connection()
        with conn.transaction():
            found = conn.execute(LOOKUP, (ps, oid, ins)).fetchone()
            if found is None or found[1] != "active" or found[4] is not None:
                return Response(b'{"error": "refused"}', 403, media_type="application/json")
            cur = conn.execute(PAGE, (found[0],))
            names = [d.name for d in cur.description or ()]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            conn.execute(
                AUDIT,
                (
                    found[0],
                    uuid.uuid4().hex,
                    datetime.now(UTC),
                    ps,
                    " ".join(r["logical_id"] for r in rows),
                ),
            )
        return Response(
            orjson.dumps({"total": len(rows), "entry": rows}), media_type="application/json"
        )

    @app.post("/bare/publish")
    async def publish(request: Request, oid: str, ins: str, ps: str) -> Response:
        bundle = orjson.loads(await request.body())
        return await run_in_threadpool(_publish, bundle, oid, ins, ps)

    def _publish(bundle: dict[str, Any], oid: str, ins: str, ps: str) -> Response:
        resources = [e.get("resource") or {} for e in bundle.get("entry") or []]
        ref = next(r for r in resources if r.get("resourceType") == "DocumentReference")
        binary = next(r for r in resources if r.get("resourceType") == "Binary")
        content = base64.b64decode(binary["data"])
        coding = ((ref.get("type") or {}).get("coding") or [{}])[0]
        attachment = ((ref.get("content") or [{}])[0] or {}).get("attachment") or {}
        conn = connection()
        with conn.transaction():
            found = conn.execute(LOOKUP, (ps, oid, ins)).fetchone()
            if found is None or found[1] != "active" or found[4] is not None:
                return Response(b'{"error": "refused"}', 403, media_type="application/json")
            doc_id = uuid.uuid4().hex
            now = datetime.now(UTC)
            conn.execute(
                STORE,
                (
                    found[0],
                    doc_id,
                    str((ref.get("masterIdentifier") or {}).get("value", doc_id)),
                    coding.get("code"),
                    attachment.get("title"),
                    binary.get("contentType", "application/octet-stream"),
                    ps,
                    now,
                    len(content),
                    content,
                ),
            )
            conn.execute(
                AUDIT_ACTION, (found[0], uuid.uuid4().hex, now, ps, "document.create", doc_id)
            )
        return Response(
            orjson.dumps({"resourceType": "Bundle", "id": doc_id}),
            201,
            media_type="application/json",
        )

    @app.get("/bare/content")
    def content(doc: str, ps: str) -> Response:
        patient_id, _, logical_id = doc.partition(".")
        conn = connection()
        with conn.transaction():
            allowed = conn.execute(PERMISSION, (ps, patient_id)).fetchone()
            if allowed is None or allowed[0] != "active" or allowed[1] is not None:
                return Response(b'{"error": "refused"}', 403, media_type="application/json")
            rows = conn.execute(CONTENT, (patient_id, logical_id)).fetchall()
            if not rows:
                return Response(b'{"error": "not found"}', 404, media_type="application/json")
            conn.execute(
                AUDIT_ACTION,
                (patient_id, uuid.uuid4().hex, datetime.now(UTC), ps, "document.read", logical_id),
            )
        return Response(b"".join(bytes(r[2]) for r in rows), media_type=rows[0][1])

    return app
