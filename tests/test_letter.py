"""The activation letter, rendered to an image as a printer would (PDFium) and read back: the
QR code leads to the portal's activation page, the holder's name and address sit in the window of
a French window envelope, the letter is dated and placed, the INS is spaced as on the Vitale
card, no guillemet is left alone on a line, and nothing is printed in the margins."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime

import pypdf
import pypdfium2 as pdfium
import zxingcpp
from PIL import Image

from dmp.access.views import Activation
from dmp.web import pdf

MM = 72 / 25.4  # PDF points per millimetre
URL = "https://dmp.exemple.fr/portail"
TO = pdf.PostalAddress("12 rue des Tilleuls", "Bâtiment B", "37400", "Amboise")


def _letter(**changes: object) -> bytes:
    activation = Activation(
        "279081234567842", "ABCD-EFGH-JKLM", datetime(2027, 1, 2, tzinfo=UTC), "Camille EXEMPLE"
    )
    kw: dict[str, object] = {
        "issuer": ("PHARMACIE DU CENTRE", "Amboise"),
        "to": TO,
        "portal_url": URL,
        "today": date(2026, 12, 3),
        **changes,
    }
    return pdf.activation_letter(activation, **kw)  # type: ignore[arg-type]


def _render(data: bytes) -> tuple[pdfium.PdfDocument, Image.Image]:
    document = pdfium.PdfDocument(data)
    image = document[0].render(scale=150 / 72).to_pil().convert("L")
    return document, image


def test_the_qr_code_leads_to_the_activation_page() -> None:
    _, image = _render(_letter())
    found = zxingcpp.read_barcodes(image)
    assert [b.text for b in found] == [f"{URL}/activation"]
    assert found[0].format == zxingcpp.BarcodeFormat.QRCode


def test_the_address_sits_in_the_envelope_window() -> None:
    document, _ = _render(_letter())
    assert len(document) == 1
    page = document[0]
    height = page.get_height()
    x, y, w, h = pdf.WINDOW
    text = page.get_textpage().get_text_bounded(
        left=x * MM, right=(x + w) * MM, top=height - y * MM, bottom=height - (y + h) * MM
    )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert lines == ["Camille EXEMPLE", "12 rue des Tilleuls", "Bâtiment B", "37400 AMBOISE"]


def test_the_letter_is_dated_placed_and_spells_everything_out() -> None:
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(_letter())).pages)
    flat = text.replace("\xa0", " ")
    assert "À Amboise, le 3 décembre 2026" in flat
    assert "votre INS) : 2 79 08 12 345 678 42" in flat
    assert f"{URL}/activation" in flat.replace("\n", "")
    assert "Code d'activation à usage unique : ABCD-EFGH-JKLM" in flat
    assert "valable jusqu'au 2 janvier 2027" in flat
    assert "PHARMACIE DU CENTRE" in flat
    for line in text.splitlines():
        assert line.strip() not in ("»", "«"), f"a guillemet alone on a line: {text!r}"
    assert re.search(r"«\s?Fermer\s+mon\s+dossier\s?»", flat)


def test_nothing_is_printed_in_the_margins() -> None:
    _, image = _render(_letter(to=pdf.PostalAddress("W" * 38, "", "37400", "Amboise")))
    dpm = image.width / 210  # pixels per millimetre
    for left, right in ((0, 14), (196, 210)):
        band = image.crop((int(left * dpm), 0, int(right * dpm), image.height))
        assert band.getextrema()[0] > 250, f"ink between {left} and {right} mm"


def test_without_a_structure_town_the_letter_is_placed_where_it_goes() -> None:
    text = pypdf.PdfReader(io.BytesIO(_letter(issuer=None))).pages[0].extract_text()
    assert "À Amboise, le 3 décembre 2026" in text.replace("\xa0", " ")
