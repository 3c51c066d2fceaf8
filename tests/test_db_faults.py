"""Database faults (issue 12): PostgreSQL going away under the service, and refusing new
connections, through a TCP proxy the test controls. Requests fail fast with 503 and
Retry-After (never 500, never a hang), and the service recovers by itself when the database is
back."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from dmp.app import create_app
from dmp.auth import actors
from dmp.clock import FixedClock
from dmp.config import Settings
from dmp.runtime import Runtime
from tests.factories import GP, ins_for, load_directory, new_document, open_record, pro

pytestmark = pytest.mark.postgres


class Proxy:
    """127.0.0.1:port -> the database; ``down()`` cuts every connection and drops new ones
    (accepted, closed at once: a server restarting or out of connections), ``refused()`` stops
    listening (connection refused), ``up()`` forwards again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0), reuse_port=True)
        self.port = self.listener.getsockname()[1]
        self.mode = "up"
        self.links: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode != "up":
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                if self.mode != "up":  # went down while this one connected
                    client.close()
                    server.close()
                    continue
                self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def down(self) -> None:
        self.mode = "down"
        with self.lock:
            for s in self.links:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self.links.clear()

    def refused(self) -> None:
        """Nothing listens any more: connections are refused outright (ECONNREFUSED)."""
        self.down()
        self.listener.close()

    def up(self) -> None:
        self.mode = "up"
        if self.listener.fileno() == -1:  # listen again on the same port
            self.listener = socket.create_server(("127.0.0.1", self.port), reuse_port=True)
            threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.down()
        with contextlib.suppress(OSError):
            self.listener.close()


@pytest.fixture
def proxied(settings: Settings, clock: FixedClock) -> Iterator[tuple[Runtime, Proxy]]:
    url = make_url(settings.database_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied_url = url.set(port=proxy.port).render_as_string(hide_password=False)
    rt = Runtime.start(settings.model_copy(update={"database_url": proxied_url}), clock=clock)
    load_directory(rt)
    try:
        yield rt, proxy
    finally:
        rt.close()
        proxy.close()


def test_the_database_going_away_is_a_503_and_the_service_recovers(
    proxied: tuple[Runtime, Proxy],
) -> None:
    rt, proxy = proxied
    ins = ins_for(151)
    open_record(rt, ins)
    gp = rt.access(pro(rt, GP))
    gp.declare_consent(ins)
    gp.deposit_document(ins, new_document(rt.clock.now()), b"x")
    token = actors.token_for(rt, actors.professional_actor(rt, GP), 3600)
    url = f"/api/records/{ins.value}/documents?oid={ins.oid}"
    headers = {"Authorization": f"Bearer {token}"}
    fhir = f"/fhir/DocumentReference?patient.identifier=urn:oid:{ins.oid}|{ins.value}"
    with TestClient(create_app(rt), raise_server_exceptions=False) as client:
        assert client.get(url, headers=headers).status_code == 200
        # A restart (connections cut, new ones dropped), then a server that refuses them.
        for fault in (proxy.down, proxy.refused):
            fault()
            for target in (url, fhir):
                started = time.monotonic()
                r = client.get(target, headers=headers)
                assert r.status_code == 503, (target, r.status_code, r.text[:200])
                assert int(r.headers["retry-after"]) > 0
                assert time.monotonic() - started < 10  # fails fast, no hang
            assert client.get(fhir, headers=headers).json()["resourceType"] == "OperationOutcome"
            proxy.up()
            statuses = [client.get(url, headers=headers).status_code for _ in range(3)]
            assert 500 not in statuses and statuses[-1] == 200, statuses


def test_an_exhausted_pool_is_a_503_within_seconds(settings: Settings, clock: FixedClock) -> None:
    rt = Runtime.start(settings.model_copy(update={"db_pool_size": 1}), clock=clock)
    try:
        load_directory(rt)
        ins = ins_for(152)
        open_record(rt, ins)
        rt.access(pro(rt, GP)).declare_consent(ins)
        token = actors.token_for(rt, actors.professional_actor(rt, GP), 3600)
        url = f"/api/records/{ins.value}/documents?oid={ins.oid}"
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(rt), raise_server_exceptions=False) as client:
            held = [rt.engine.connect() for _ in range(2)]  # the pool (1) and its overflow (1)
            try:
                started = time.monotonic()
                r = client.get(url, headers=headers)
                assert r.status_code == 503 and int(r.headers["retry-after"]) > 0, r.text
                assert time.monotonic() - started < 10
            finally:
                for conn in held:
                    conn.close()
            assert client.get(url, headers=headers).status_code == 200
    finally:
        rt.close()
