"""Baselines served by the same HTTP stack as dmp (dmp.server: uvicorn, same workers).

- ``hello``: FastAPI answering a constant JSON document: the ceiling of the HTTP stack.
- ``bare``: the consultation's shape with nothing of dmp: FastAPI + psycopg, one transaction
  that looks the patient and the professional's permission up, reads 20 document rows of the
  patient, and inserts one audit row. No rules, no MAC, no ORM: what a hand-written endpoint
  costs on the same data, so that dmp's figures can be read as a ratio to it.

Both are ASGI factories for ``dmp.server.run`` (``bench.baselines:hello``); ``bare`` reads the
PostgreSQL URL from ``BENCH_BARE_DSN``.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Response

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

    return app
