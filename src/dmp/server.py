"""The HTTP listener: uvicorn on a socket we bind ourselves, one or several worker processes.

Why not ``uvicorn.run(workers=N)``: uvicorn's multi-worker path binds its listening socket with
``socket.socket(family)``, whose protocol number is 0; asyncio only sets ``TCP_NODELAY`` on
accepted sockets whose protocol is ``IPPROTO_TCP``, so every keep-alive response met Nagle's
algorithm and the client's delayed ACK (about 40 ms a response; measured in docs/performance.md).
Binding the socket with ``IPPROTO_TCP`` here gives every worker's connections ``TCP_NODELAY``.

Behind a load balancer a node leaves before it stops (:class:`Drain`, ``DMP_DRAIN_SECONDS``).
"""

from __future__ import annotations

import signal
import socket
import threading
from types import FrameType
from typing import Any


def listening_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A TCP listening socket whose accepted connections get ``TCP_NODELAY`` from asyncio."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def run(app: str, *, host: str, port: int, workers: int = 1, **options: Any) -> None:
    """Serve the ASGI application ``app`` ("module:callable", a factory) until stopped."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        app,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        server_header=False,  # no banner naming the server software
        # X-Forwarded-For is read by the application, from DMP_TRUSTED_PROXIES only
        # (dmp.domain.net); uvicorn would otherwise believe it from any loopback peer.
        proxy_headers=False,
        backlog=2048,
        **options,
    )
    sock = listening_socket(host, port)
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    finally:
        sock.close()


class Drain:
    """A node leaving a load balancer's pool before it stops.

    On SIGTERM the node goes on serving, but ``/health`` answers 503 ("draining") for
    ``seconds``: the balancer's health check takes the node out, so no new request reaches it.
    Then the server stops as uvicorn does, finishing the requests in flight. A second SIGTERM
    stops it at once; SIGINT (Ctrl-C) is left as it was.

    Installed from inside the application factory, in each serving process: uvicorn installs
    its own handlers before it loads the application, so the one found here is uvicorn's, which
    is called when the drain ends."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = threading.Event()

    def install(self) -> bool:
        """Take SIGTERM over (main thread only, and only with a drain time); whether it did."""
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return False
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return False

        def on_term(sig: int, frame: FrameType | None) -> None:
            if self.started.is_set():  # asked again: stop now
                previous(sig, frame)
                return
            self.started.set()
            timer = threading.Timer(self.seconds, previous, args=(sig, None))
            timer.daemon = True
            timer.start()

        signal.signal(signal.SIGTERM, on_term)
        return True
