"""INS: the national health identifier (Identifiant National de Santé).

An INS is a 13-character matricule plus a 2-digit control key, qualified by the OID of its
assigning authority (domain reference §3.1):

- ``1.2.250.1.213.1.4.8``  INS-NIR (the social-security number)
- ``1.2.250.1.213.1.4.9``  INS-NIA (number assigned while the NIR is pending)
- ``1.2.250.1.213.1.4.10`` test identifiers, ``1.2.250.1.213.1.4.11`` demonstration identifiers:
  accepted only when the server runs in test/demo mode.

Key = 97 - (matricule mod 97). Corsican départements appear as ``2A``/``2B`` in positions 6-7 and
count as 19 and 18 for the key (INSEE rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stdnum.fr import nir

from dmp.errors import InvalidInput

OID_NIR = "1.2.250.1.213.1.4.8"
OID_NIA = "1.2.250.1.213.1.4.9"
OID_TEST = "1.2.250.1.213.1.4.10"
OID_DEMO = "1.2.250.1.213.1.4.11"
PRODUCTION_OIDS = frozenset({OID_NIR, OID_NIA})
TEST_OIDS = frozenset({OID_TEST, OID_DEMO})
INS_OIDS = PRODUCTION_OIDS | TEST_OIDS  # every INS assigning authority the service knows

_SHAPE = re.compile(r"^[1-8]\d{4}(\d{2}|2A|2B)\d{6}\d{2}$")


def control_key(matricule: str) -> int:
    """The 2-digit key of a 13-character matricule (Corsica 2A -> 19, 2B -> 18), computed by
    python-stdnum's NIR module; our own checks give the readable reasons."""
    if len(matricule) != 13:
        raise InvalidInput("an INS matricule has 13 characters before its 2-digit key")
    upper = matricule.upper()
    if not (upper[:5] + upper[7:]).isdigit() or not (
        upper[5:7].isdigit() or upper[5:7] in ("2A", "2B")
    ):
        raise InvalidInput("an INS matricule has only digits, apart from 2A/2B for Corsica")
    return int(nir.calc_check_digits(upper))


@dataclass(frozen=True, slots=True)
class Ins:
    """A validated INS: the assigning authority OID and the 15-character value."""

    oid: str
    value: str

    @property
    def departement_of_birth(self) -> str:
        return self.value[5:7]

    def __str__(self) -> str:
        return f"urn:oid:{self.oid}|{self.value}"


def parse_ins(value: str, oid: str = OID_NIR, *, test_mode: bool = False) -> Ins:
    """Validate an INS value under an OID; raise :class:`InvalidInput` with the exact reason."""
    if oid in TEST_OIDS:
        if not test_mode:
            raise InvalidInput(
                f"INS test/demo identifiers (OID {oid}) are refused outside test or demo mode"
            )
    elif oid not in PRODUCTION_OIDS:
        raise InvalidInput(f"unknown INS assigning authority OID {oid!r}")
    cleaned = value.replace(" ", "").upper()
    if len(cleaned) != 15:
        raise InvalidInput(f"an INS has 15 characters (13 + 2-digit key), got {len(cleaned)}")
    if not _SHAPE.match(cleaned):
        raise InvalidInput("an INS is digits only, apart from 2A/2B in positions 6-7")
    expected = control_key(cleaned[:13])
    if int(cleaned[13:]) != expected:
        raise InvalidInput("the INS control key does not match its number")
    return Ins(oid=oid, value=cleaned)


def parse_ins_token(token: str, *, test_mode: bool = False) -> Ins:
    """Parse ``urn:oid:<oid>|<value>``, ``<oid>|<value>`` or a bare value (INS-NIR)."""
    system, sep, value = token.partition("|")
    if not sep:
        return parse_ins(system, test_mode=test_mode)
    oid = system.removeprefix("urn:oid:")
    return parse_ins(value, oid, test_mode=test_mode)


def make_ins_value(matricule: str) -> str:
    """Append the control key to a 13-character matricule (used by the demo and tests)."""
    return f"{matricule}{control_key(matricule):02d}"


@dataclass(frozen=True, slots=True)
class PatientKey:
    """The server's opaque key of a patient (FHIR resource ids carry it, never the INS)."""

    id: str


PatientRef = Ins | PatientKey
