"""A real browser for the portal tests: Debian's Chromium driven by Playwright (never a
downloaded browser), the service on a loopback port in this process, and axe-core (bundled in
the axe-playwright-python package) for the accessibility check of every page."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from dmp.app import create_app
from dmp.runtime import Runtime

CHROMIUM = Path("/usr/bin/chromium")
# The reason .ci/run looks for: in CI no test may be skipped for it.
NO_BROWSER = "Browser test: needs Debian's chromium (apt-get install chromium) and playwright"
SCREENSHOTS = Path(os.environ.get("DMP_SCREENSHOTS", "test-screenshots"))
# What Chromium must not do on this machine's closed network (see the machine notes).
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return CHROMIUM.exists()


class LiveServer:
    """The app on 127.0.0.1 (a free port), served by uvicorn in a thread of this process."""

    def __init__(self, rt: Runtime, sock: socket.socket | None = None) -> None:
        """``sock``: a socket already bound (when the settings must name the address)."""
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(rt), log_level="warning", lifespan="on", proxy_headers=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    if not browser_available():
        pytest.skip(NO_BROWSER)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield browser
        browser.close()


class Checker:
    """Every page a test visits: no serious or critical axe-core violation, no script or
    style blocked by the CSP (nothing inline), under 100 KB, and a screenshot."""

    def __init__(self, name: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.axe = Axe()
        self.dir = SCREENSHOTS / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.seen: list[str] = []
        self.console_errors: list[str] = []

    def watch(self, page: Any) -> None:
        page.on(
            "console",
            lambda msg: self.console_errors.append(msg.text) if msg.type == "error" else None,
        )

    def check(self, page: Any, label: str, budget: int = 100_000) -> None:
        results = self.axe.run(page)
        bad = [
            f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
            for v in results.response["violations"]
            if v.get("impact") in ("serious", "critical")
        ]
        assert not bad, f"{label}: accessibility violations: {bad}"
        size = page.evaluate(
            "() => performance.getEntriesByType('navigation').concat("
            "performance.getEntriesByType('resource'))"
            ".reduce((n, e) => n + (e.transferSize || e.encodedBodySize || 0), 0)"
        )
        assert size < budget, f"{label}: {size} bytes before images"
        csp = [e for e in self.console_errors if "Content Security Policy" in e]
        assert not csp, f"{label}: blocked by the CSP: {csp}"
        page.screenshot(path=str(self.dir / f"{len(self.seen):02d}-{label}.png"), full_page=True)
        self.seen.append(label)
