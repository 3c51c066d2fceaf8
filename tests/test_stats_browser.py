"""The public statistics page in Debian's Chromium: the map has every département with its
class, each readable on focus, the page passes axe-core, and screenshots are kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from dmp.domain.geo import geography
from dmp.runtime import Runtime
from tests import stats_model
from tests.browser import Checker, LiveServer
from tests.test_stats import _activity

# The map draws about 330 KB of outlines (under 110 KB sent gzip-compressed).
MAP_BUDGET = 150_000


@pytest.fixture
def server(world: Runtime) -> Iterator[LiveServer]:
    _activity(world)
    with LiveServer(world) as live:
        yield live


def _rank_of_touraine(world: Runtime) -> str:
    """Its rank from the model: 1 + the départements of a higher published share (equal
    shares share a rank); the active counts are those of ``_activity``."""
    population = {c: d.population for c, d in geography().departements.items()}
    shares = {}
    for code, active in (("37", 11), ("2A", 3), ("971", 1)):
        shown = stats_model.active(world, code, active)
        if isinstance(shown, int):
            shares[code] = shown / population[code]
    assert "37" in shares  # 11 active: never hidden
    return str(1 + sum(1 for s in shares.values() if s > shares["37"]))


def test_the_map_in_a_browser(chromium: Any, server: LiveServer, world: Runtime) -> None:
    check = Checker("stats")
    context = chromium.new_context(base_url=server.url, locale="fr-FR")
    page = context.new_page()
    check.watch(page)
    try:
        page.goto("/stats")
        deps = page.locator("svg.carte g.dep")
        assert deps.count() == 102  # 94 + 2A/2B + the five overseas départements and 975
        assert (
            page.locator("svg.carte g.dep[data-departement='37']").get_attribute("data-class")
            == "c0"
        )
        # Keyboard: each département is a link to its page, named with its share and rank.
        touraine = page.locator("svg.carte a[data-departement='37']")
        touraine.focus()
        assert page.evaluate("document.activeElement.getAttribute('data-departement')") == "37"
        assert "Indre-et-Loire (37) : " in (touraine.get_attribute("aria-label") or "")
        page.keyboard.press("Tab")  # the next département's link
        assert page.evaluate("document.activeElement.getAttribute('href')").startswith("/stats/")
        rank = page.locator("table tr[data-departement='37'] td").nth(3).inner_text()
        assert rank == _rank_of_touraine(world)
        check.check(page, "carte", budget=MAP_BUDGET)
        # Its page, reached from the map and from the ranking: figures, trends, milestones.
        touraine.click()
        page.wait_for_url("**/stats/37")
        page.go_back()
        page.locator("table tr[data-departement='37'] a").click()
        page.wait_for_url("**/stats/37")
        assert page.locator("h1").inner_text() == "Indre-et-Loire (37)"
        assert page.locator("figure svg[role='img']").count() == 3
        check.check(page, "indre-et-loire")
    finally:
        context.close()
