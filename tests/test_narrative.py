"""The allowlist sanitizer and the CDA narrative renderer: hostile markup never survives."""

from __future__ import annotations

import pytest

from dmp.domain.narrative import cda_narrative_html, sanitize


@pytest.mark.parametrize(
    ("hostile", "forbidden"),
    [
        ("<script>alert(1)</script><p>ok</p>", "script"),
        ('<p onclick="x()">ok</p>', "onclick"),
        ('<img src="https://example.org/t.png">', "img"),
        ('<a href="javascript:alert(1)">x</a>', "javascript"),
        ('<p style="background:url(https://example.org/x)">ok</p>', "example.org"),
        ("<iframe src='https://example.org'></iframe>", "iframe"),
        ("<svg><script>alert(1)</script></svg>", "script"),
        ('<td colspan="2" data-x="1">v</td>', "data-x"),
    ],
)
def test_sanitize_removes_what_could_run_or_fetch(hostile: str, forbidden: str) -> None:
    assert forbidden not in sanitize(hostile)


def test_sanitize_keeps_the_narrative_structure() -> None:
    kept = (
        "<h3>T</h3><p>a<br>b</p><ul><li>i</li></ul>"
        '<table><tbody><tr><td colspan="2">v</td></tr></tbody></table>'
    )
    assert sanitize(kept) == kept


def test_a_document_that_is_not_cda_has_no_narrative() -> None:
    assert cda_narrative_html(b"%PDF-1.4 not xml") is None
    assert cda_narrative_html(b"<html><body>x</body></html>") is None
    doctype = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'
    )
    assert cda_narrative_html(doctype) is None
