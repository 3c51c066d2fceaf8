from __future__ import annotations

import dataclasses
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.crypto.keyring import create_keyring, load_keyring
from dmp.domain.ins import Ins
from dmp.errors import ConfigurationError, Forbidden, IntegrityFailure, NotFound
from dmp.identity.actor import system_actor
from dmp.jobs import maintenance
from dmp.runtime import Runtime
from tests.factories import GP, T0, ins_for, load_directory, new_document, open_record, pro

SECRET = "Diagnostic confidentiel: hypertension arterielle 7f3a9c"


def _deposit(rt: Runtime, i: int = 1, text: str = SECRET) -> tuple[Ins, str]:
    ins = ins_for(i)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(T0), text.encode())
    return ins, doc.logical_id


def test_plaintext_is_not_stored(world: Runtime) -> None:
    _deposit(world)
    with world.engine.connect() as conn:
        sealed = conn.execute(sa.text("SELECT sealed FROM document_contents")).scalars().all()
    assert len(sealed) == 1
    assert SECRET.encode() not in bytes(sealed[0])
    if world.engine.dialect.name == "sqlite":
        db = Path(world.engine.url.database or "")
        raw = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
        assert b"hypertension" not in raw
        assert b"Compte rendu" in raw  # the metadata is there: the scan does read the file


def test_content_round_trip(world: Runtime) -> None:
    ins, doc_id = _deposit(world)
    _, content = world.access(pro(world, GP)).read_content(ins, doc_id)
    assert content.decode() == SECRET


def test_wrong_key_encryption_key_fails(world: Runtime) -> None:
    ins, doc_id = _deposit(world)
    kek_id = world.keyring.active_kek_id
    world.keyring = dataclasses.replace(world.keyring, keks={kek_id: secrets.token_bytes(32)})
    with pytest.raises(IntegrityFailure):
        world.access(pro(world, GP)).read_content(ins, doc_id)


def test_ciphertext_moved_to_another_patient_fails(world: Runtime) -> None:
    _deposit(world, 1)
    ins2, doc2 = _deposit(world, 2, "other text")
    with world.engine.begin() as conn:
        first = conn.execute(
            sa.text(
                "SELECT patient_id, sealed FROM document_contents WHERE patient_id IN "
                "(SELECT patient_id FROM documents WHERE logical_id <> :d)"
            ),
            {"d": doc2},
        ).one()
        conn.execute(
            sa.text("UPDATE document_contents SET sealed = :s WHERE patient_id <> :p"),
            {"s": first.sealed, "p": first.patient_id},
        )
    with pytest.raises(IntegrityFailure):
        world.access(pro(world, GP)).read_content(ins2, doc2)


def test_rotation_keeps_content_readable(world: Runtime) -> None:
    ins, doc_id = _deposit(world)
    old_kek = world.keyring.active_kek_id
    new_kek, count = maintenance.rotate_keys(world)
    assert new_kek != old_kek and count == 1
    assert load_keyring(world.keyring.path).active_kek_id == new_kek
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT kek_id FROM patient_keys")).scalar_one() == new_kek
    # The old KEK is no longer needed for current data: drop it and read again.
    world.keyring = dataclasses.replace(world.keyring, keks={new_kek: world.keyring.keks[new_kek]})
    _, content = world.access(pro(world, GP)).read_content(ins, doc_id)
    assert content.decode() == SECRET
    assert maintenance.verify_audit(world).ok


def _rotation_events(rt: Runtime) -> list[tuple[str, str]]:
    with rt.engine.connect() as conn:
        return [
            (r.actor_id, r.target)
            for r in conn.execute(
                sa.text("SELECT actor_id, target FROM audit_events WHERE action = 'keys.rotate'")
            )
        ]


def test_a_rotation_and_its_audit_event_commit_together(
    world: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The re-wrap and its event are one transaction of the gate's system action (issue 22:
    the event was written after, in a transaction of its own): a rotation that fails half way
    changes no key and leaves no event; one that succeeds leaves both."""
    from dmp.records import keys

    for i in (1, 2, 3):
        _deposit(world, i)
    before = world.keyring.active_kek_id
    real = keys.rewrap
    calls = []

    def failing(conn: sa.Connection, updates: list[dict[str, object]]) -> None:
        calls.append(len(updates))
        real(conn, updates)
        if len(calls) == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(keys, "rewrap", failing)
    with pytest.raises(RuntimeError):
        maintenance.rotate_keys(world, batch=1)
    with world.engine.connect() as conn:
        wrapped_by = set(conn.execute(sa.text("SELECT kek_id FROM patient_keys")).scalars())
    assert wrapped_by == {before}  # the first batch was rolled back with the rest
    assert _rotation_events(world) == []
    monkeypatch.setattr(keys, "rewrap", real)
    # Nor does a rotation whose event cannot be written.
    from dmp.access import audit

    def no_trail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("audit write failed")

    monkeypatch.setattr(audit, "write_events", no_trail)
    with pytest.raises(RuntimeError):
        maintenance.rotate_keys(world, batch=1)
    with world.engine.connect() as conn:
        wrapped_by = set(conn.execute(sa.text("SELECT kek_id FROM patient_keys")).scalars())
    assert wrapped_by == {before}
    monkeypatch.undo()
    new_kek, count = maintenance.rotate_keys(world, batch=1)
    assert count == 3
    assert _rotation_events(world) == [("system:keys-rotate", new_kek)]
    assert maintenance.verify_audit(world).ok


def test_only_a_system_job_acts_outside_a_record(world: Runtime) -> None:
    from dmp.domain.codes import AuditAction

    with (
        pytest.raises(Forbidden),
        world.access(pro(world, GP)).act_system(AuditAction.KEYS_ROTATE, "x"),
    ):
        pass
    with world.access(system_actor("keys-rotate")).act_system(AuditAction.KEYS_ROTATE, "y"):
        pass
    assert _rotation_events(world) == [("system:keys-rotate", "y")]


def test_a_running_process_picks_up_a_rotation(world: Runtime) -> None:
    ins, doc_id = _deposit(world)
    other = Runtime(
        world.settings,
        world.engine,
        load_keyring(world.keyring.path),
        world.clock,
        world.matrix,
        world.milestones,
    )
    maintenance.rotate_keys(other)  # another process rotates; `world` still holds the old ring
    _, content = world.access(pro(world, GP)).read_content(ins, doc_id)
    assert content.decode() == SECRET


def test_shredding_makes_content_unreadable(world: Runtime) -> None:
    ins, doc_id = _deposit(world)
    assert world.access(system_actor("purge")).destroy_data_keys(ins) == 1
    gp = world.access(pro(world, GP))
    with pytest.raises(IntegrityFailure):
        gp.read_content(ins, doc_id)
    # Metadata stays (the record's history), only the content is gone.
    assert gp.search_documents(ins).total == 1
    with world.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT wrapped FROM patient_keys")).scalar_one() is None


def test_only_a_system_job_shreds(world: Runtime) -> None:
    ins, _ = _deposit(world)
    with pytest.raises(Forbidden):
        world.access(pro(world, GP)).destroy_data_keys(ins)
    with pytest.raises(NotFound):
        world.access(system_actor("purge")).destroy_data_keys(ins_for(99))


def test_keyring_file_is_private_and_stable(tmp_path: Path) -> None:
    path = tmp_path / "ring" / "keyring.json"
    ring = create_keyring(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_keyring(path)
    assert again.keks == ring.keks and again.token_secret == ring.token_secret
    assert again.audit_keys == ring.audit_keys and ring.active_audit_key_id in ring.audit_keys
    assert create_keyring(path).keks == ring.keks  # a second start loads the first one's ring
    key = ring.keks[ring.active_kek_id]
    assert repr(key) not in repr(ring) and key.hex() not in repr(ring)


def test_large_content_is_chunked_and_streamed(world: Runtime) -> None:
    big = os.urandom(700 * 1024)  # three chunks of 256 KiB
    ins = ins_for(5)
    open_record(world, ins)
    gp = world.access(pro(world, GP))
    gp.declare_consent(ins)
    doc = gp.deposit_document(ins, new_document(T0), big)
    with world.engine.connect() as conn:
        chunks = conn.execute(
            sa.text("SELECT chunk FROM document_contents ORDER BY chunk")
        ).scalars()
        assert list(chunks) == [0, 1, 2]
    _, whole = gp.read_content(ins, doc.logical_id)
    assert whole == big
    _, stream = gp.stream_content(ins, doc.logical_id)
    parts = list(stream)
    assert len(parts) == 3
    assert b"".join(parts) == big


ATTACKS = ["reorder", "truncate", "flip", "swap"]


def _tamper(rt: Runtime, attack: str, target: str, other: str) -> None:
    """Alters the chunks of content ``target``; ``other`` is a content of the same patient."""
    renumber = sa.text(
        "UPDATE document_contents SET chunk = :to WHERE content_id = :t AND chunk = :n"
    )
    one = "FROM document_contents WHERE content_id = :t AND chunk = :n"
    reseal = sa.text(
        "UPDATE document_contents SET sealed = :s WHERE content_id = :t AND chunk = :n"
    )
    with rt.engine.begin() as conn:
        if attack == "reorder":
            for n, to in ((0, 99), (1, 0), (99, 1)):
                conn.execute(renumber, {"t": target, "n": n, "to": to})
        elif attack == "truncate":
            conn.execute(sa.text("DELETE " + one), {"t": target, "n": 2})
        elif attack == "flip":
            # One byte flipped in the last chunk: the failure comes after others were opened.
            sealed = conn.execute(
                sa.text("SELECT sealed " + one), {"t": target, "n": 2}
            ).scalar_one()
            altered = bytearray(sealed)
            altered[20] ^= 0x01
            conn.execute(reseal, {"t": target, "n": 2, "s": bytes(altered)})
        else:
            # The second chunk replaced by the second chunk of another document of the same
            # patient (same data key): only the document and position binding tell them apart.
            stolen = conn.execute(
                sa.text("SELECT sealed " + one), {"t": other, "n": 1}
            ).scalar_one()
            conn.execute(reseal, {"t": target, "n": 1, "s": stolen})


def _two_documents(rt: Runtime, i: int) -> tuple[Ins, list[tuple[str, str]]]:
    """A patient with two three-chunk documents: their (logical id, content id)."""
    ins = ins_for(i)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    for _ in range(2):
        gp.deposit_document(ins, new_document(T0), os.urandom(600 * 1024))
    with rt.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT logical_id, content_id FROM documents")).all()
    return ins, [(r.logical_id, r.content_id) for r in rows]


@pytest.mark.parametrize("eager", [True, False], ids=["opened-once", "checked-then-streamed"])
@pytest.mark.parametrize("attack", ATTACKS)
def test_tampered_chunks_fail_before_the_first_byte(
    world: Runtime, attack: str, eager: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An altered, swapped, reordered or missing chunk is refused when the content is asked
    for, before anything is sent: never half a document and a cut connection."""
    from dmp.access import documents as access_documents

    if not eager:
        monkeypatch.setattr(access_documents, "EAGER_CHUNKS", 1)
    ins, [(doc_id, target), (other_id, other)] = _two_documents(world, 6)
    gp = world.access(pro(world, GP))
    _, intact = gp.stream_content(ins, doc_id)
    assert len(list(intact)) == 3
    _tamper(world, attack, target, other)
    with pytest.raises(IntegrityFailure):
        gp.read_content(ins, doc_id)
    with pytest.raises(IntegrityFailure):
        gp.stream_content(ins, doc_id)
    _, untouched = gp.stream_content(ins, other_id)
    assert len(b"".join(untouched)) == 600 * 1024


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_tampered_content_is_a_clear_answer_over_http(world: Runtime, attack: str) -> None:
    from fastapi.testclient import TestClient

    from dmp.app import create_app
    from dmp.front import fhir_mapping as mapping
    from tests.fhir_helpers import bearer

    ins, [(doc_id, target), (other_id, other)] = _two_documents(world, 7)
    _tamper(world, attack, target, other)
    gp = world.access(pro(world, GP))
    doc_id, other_id = (mapping.doc_fhir_id(gp.read_document(ins, d)) for d in (doc_id, other_id))
    h = bearer(world, pro(world, GP))
    with TestClient(create_app(world), raise_server_exceptions=False) as client:
        r = client.get(f"/fhir/Binary/{doc_id}", headers=h)
        assert r.status_code == 500
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert "stored content" in r.json()["issue"][0]["diagnostics"]
        assert len(client.get(f"/fhir/Binary/{other_id}", headers=h).content) == 600 * 1024


def test_content_sealed_before_chunking_stays_readable(world: Runtime) -> None:
    """Databases written before migration 0006 hold one piece sealed with the bare context."""
    from dmp.crypto import envelope

    ins, doc_id = _deposit(world)
    with world.engine.begin() as conn:
        row = conn.execute(sa.text("SELECT patient_id, content_id FROM document_contents")).one()
        key_row = conn.execute(sa.text("SELECT kek_id, wrapped FROM patient_keys")).one()
        data_key = envelope.unwrap_data_key(
            world.kek(key_row.kek_id), bytes(key_row.wrapped), row.patient_id
        )
        legacy = envelope.seal(
            data_key, SECRET.encode(), envelope.content_context(row.patient_id, row.content_id)
        )
        conn.execute(sa.text("UPDATE document_contents SET sealed = :s"), {"s": legacy})
    _, content = world.access(pro(world, GP)).read_content(ins, doc_id)
    assert content.decode() == SECRET


def test_a_missing_key_ring_is_never_silently_replaced(
    settings: Settings, clock: FixedClock
) -> None:
    """Defect: with the ring gone, a new one was created; the server said healthy, reads failed
    with 500 naming the key, and documents deposited meanwhile were unreadable with the real
    ring restored. Now the server refuses to start and says what to do."""
    rt = Runtime.start(settings, clock=clock)
    load_directory(rt)
    ins, doc = _deposit(rt)
    rt.close()
    ring = settings.effective_keyring_path
    backup = ring.with_name("keyring.backup")
    ring.rename(backup)
    with pytest.raises(ConfigurationError, match="restore the key ring"):
        Runtime.start(settings, clock=clock)
    assert not ring.exists()  # no new ring was made
    backup.rename(ring)
    rt = Runtime.start(settings, clock=clock)
    _, content = rt.access(pro(rt, GP)).read_content(ins, doc)
    assert content == SECRET.encode()
    rt.close()


def test_serve_refuses_to_start_without_its_key_ring(settings: Settings, clock: FixedClock) -> None:
    rt = Runtime.start(settings, clock=clock)
    load_directory(rt)
    _deposit(rt)
    rt.close()
    settings.effective_keyring_path.unlink()
    env = {
        **os.environ,
        "DMP_DATA_DIR": str(settings.data_dir),
        "DMP_DATABASE_URL": settings.effective_database_url,
        "DMP_TEST_MODE": "true",
    }
    out = subprocess.run(
        [sys.executable, "-m", "dmp.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode != 0
    assert "restore the key ring" in out.stderr


def test_keys_check_names_what_the_database_needs(settings: Settings, clock: FixedClock) -> None:
    rt = Runtime.start(settings, clock=clock)
    load_directory(rt)
    _deposit(rt)
    report = maintenance.check_keys(rt)
    assert report.ok
    assert report.keks_needed == {rt.keyring.active_kek_id}
    assert rt.keyring.active_audit_key_id in report.audit_keys_needed
    # A ring that lacks what the database needs is reported, key by key.
    stranger = create_keyring(settings.data_dir / "other.json")
    rt.keyring = stranger
    report = maintenance.check_keys(rt, reload=False)
    assert not report.ok
    assert report.keks_missing == report.keks_needed
    rt.close()


def test_a_ring_that_did_not_seal_the_database_is_refused(
    settings: Settings, clock: FixedClock
) -> None:
    """Issue 22: a wrong but present ring started the server, answered 500 on older data and
    MACed new audit events under the wrong key. The database records the ring that sealed it;
    another ring is refused with a clear message, nothing written; the right one starts."""
    rt = Runtime.start(settings, clock=clock)
    load_directory(rt)
    ins, doc = _deposit(rt)
    rt.close()
    other = settings.data_dir / "another-installation.json"
    create_keyring(other)
    wrong = settings.model_copy(update={"keyring_path": other})
    with pytest.raises(ConfigurationError, match="did not seal this database"):
        Runtime.start(wrong, clock=clock)
    report = maintenance.check_keys_offline(wrong)
    assert report.sealed_by_ring is False and not report.ok
    assert maintenance.check_keys_offline(settings).ok
    # The same keys under the same ids, with another secret, would not do either: the seal is
    # a MAC under the ring's own secret (only the seal refuses this one).
    rt = Runtime.start(settings, clock=clock)
    forged = dataclasses.replace(rt.keyring, path=other, token_secret=secrets.token_bytes(32))
    forged.save()
    rt.close()
    with pytest.raises(ConfigurationError, match="did not seal this database"):
        Runtime.start(wrong, clock=clock)
    rt = Runtime.start(settings, clock=clock)
    assert rt.access(pro(rt, GP)).read_content(ins, doc)[1] == SECRET.encode()
    assert maintenance.verify_audit(rt).ok
    rt.close()


def test_an_empty_database_takes_the_ring_it_is_started_with(
    settings: Settings, clock: FixedClock
) -> None:
    Runtime.start(settings, clock=clock).close()  # sealed, but nothing sealed with it yet
    fresh = settings.model_copy(update={"keyring_path": settings.data_dir / "fresh.json"})
    rt = Runtime.start(fresh, clock=clock)  # allowed: the new ring seals the empty database
    load_directory(rt)
    _deposit(rt)
    rt.close()
    with pytest.raises(ConfigurationError, match="did not seal this database"):
        Runtime.start(settings, clock=clock)
