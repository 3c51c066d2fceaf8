"""Streaming import of the health-professional directory extract (Annuaire Santé).

Format: UTF-8, ``|``-separated, 52 columns, a trailing ``|`` on each line, one line per
professional activity (a professional with two sites has two lines). See
``shared/examples/rpps/README.md``. The import is an idempotent upsert in batches.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from dmp.errors import InvalidInput

COLUMNS = 52
_BATCH = 1000
_ID_NAT_PS = re.compile(r"^[0-9]\d{5,19}$")
_PROFESSION = re.compile(r"^\d{1,4}$")

# Column names of the extract that the import uses.
C_ID = "Identification nationale PP"
C_FAMILY = "Nom d'exercice"
C_GIVEN = "Prénom d'exercice"
C_PROF = "Code profession"
C_PROF_LABEL = "Libellé profession"
C_SPEC = "Code savoir-faire"
C_SPEC_LABEL = "Libellé savoir-faire"
C_MODE = "Libellé mode exercice"
C_SIRET = "Numéro SIRET site"
C_FINESS = "Numéro FINESS site"
C_TECH = "Identifiant technique de la structure"
C_NAME = "Raison sociale site"
C_SIGN = "Enseigne commerciale site"
C_COMMUNE = "Code commune (coord. structure)"
C_DEPT = "Code Département (structure)"
C_SECTOR = "Code secteur d'activité"
C_SECTOR_LABEL = "Libellé secteur d'activité"
C_SECTION = "Code section tableau pharmaciens"


@dataclass
class ImportSummary:
    loaded: int = 0
    rejected: int = 0
    professionals: int = 0
    structures: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    examples: list[tuple[int, str]] = field(default_factory=list)

    def reject(self, line_no: int, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        if len(self.examples) < 20:
            self.examples.append((line_no, reason))


@dataclass(frozen=True)
class ParsedRow:
    professional: dict[str, Any]
    structure: dict[str, Any] | None
    mode: str | None


def structure_id(cols: dict[str, str]) -> str | None:
    """idNatStruct: ``1`` + FINESS, ``3`` + SIRET, else the directory's technical id."""
    if cols[C_FINESS]:
        return "1" + cols[C_FINESS]
    if cols[C_SIRET]:
        return "3" + cols[C_SIRET]
    return cols[C_TECH] or None


def parse_line(header: list[str], line: str) -> ParsedRow:
    parts = line.rstrip("\r\n").split("|")
    if parts and parts[-1] == "":
        parts = parts[:-1]
    if len(parts) != COLUMNS:
        raise InvalidInput(f"expected {COLUMNS} columns, found {len(parts)}")
    cols = {name: value.strip() for name, value in zip(header, parts, strict=True)}
    ps = cols[C_ID]
    if not _ID_NAT_PS.match(ps):
        raise InvalidInput("invalid national identifier (idNatPS)")
    if not _PROFESSION.match(cols[C_PROF]):
        raise InvalidInput("missing or invalid profession code")
    if not cols[C_FAMILY]:
        raise InvalidInput("missing family name")
    professional = {
        "id_nat_ps": ps,
        "family_name": cols[C_FAMILY][:100],
        "given_name": cols[C_GIVEN][:100],
        "profession_code": cols[C_PROF],
        "profession_label": cols[C_PROF_LABEL][:100] or None,
        "specialty_code": cols[C_SPEC] or None,
        "specialty_label": cols[C_SPEC_LABEL][:200] or None,
        "pharmacist_section": cols[C_SECTION] or None,
    }
    sid = structure_id(cols)
    structure = None
    if sid is not None:
        structure = {
            "id": sid[:32],
            "name": (cols[C_NAME] or cols[C_SIGN] or sid)[:200],
            "finess": cols[C_FINESS] or None,
            "siret": cols[C_SIRET] or None,
            "sector_code": cols[C_SECTOR] or None,
            "sector_label": cols[C_SECTOR_LABEL][:200] or None,
            "commune": cols[C_COMMUNE] or None,
            "departement": cols[C_DEPT] or None,
        }
    return ParsedRow(professional, structure, cols[C_MODE] or None)


def read_header(fh: IO[str]) -> list[str]:
    header = fh.readline().rstrip("\r\n").split("|")
    if header and header[-1] == "":
        header = header[:-1]
    if len(header) != COLUMNS or C_ID not in header or C_PROF not in header:
        raise InvalidInput(
            f"not a directory extract: the header must have the {COLUMNS} columns of "
            "PS_LibreAcces_Personne_activite"
        )
    return header


def batches(
    path: Path, summary: ImportSummary, progress: Callable[[int], None] | None = None
) -> Iterator[list[ParsedRow]]:
    """Parsed rows in batches; bad lines are counted in ``summary`` with their reason."""
    with path.open("r", encoding="utf-8", newline="") as fh:
        header = read_header(fh)
        batch: list[ParsedRow] = []
        line_no = 1
        for line in fh:
            line_no += 1
            if progress is not None:
                progress(len(line.encode("utf-8")))
            if not line.strip():
                continue
            try:
                batch.append(parse_line(header, line))
            except InvalidInput as exc:
                summary.reject(line_no, exc.message)
                continue
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch
