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

from dmp.domain.french import MONTHS
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
        raise InvalidInput(
            "an INS matricule has 13 characters before its 2-digit key",
            french="l'INS compte 13 caractères avant sa clé de 2 chiffres",
        )
    upper = matricule.upper()
    if not (upper[:5] + upper[7:]).isdigit() or not (
        upper[5:7].isdigit() or upper[5:7] in ("2A", "2B")
    ):
        raise InvalidInput(
            "an INS matricule has only digits, apart from 2A/2B for Corsica",
            french="l'INS ne contient que des chiffres (sauf 2A ou 2B pour la Corse)",
        )
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
                f"INS test/demo identifiers (OID {oid}) are refused outside test or demo mode",
                french="les INS de test ou de démonstration ne sont acceptés qu'en mode test",
            )
    elif oid not in PRODUCTION_OIDS:
        raise InvalidInput(
            f"unknown INS assigning authority OID {oid!r}",
            french="le type d'identifiant choisi n'est pas un INS connu",
        )
    cleaned = value.replace(" ", "").upper()
    if len(cleaned) != 15:
        raise InvalidInput(
            f"an INS has 15 characters (13 + 2-digit key), got {len(cleaned)}",
            french=f"l'INS compte 15 caractères (13 et une clé de 2 chiffres), et non "
            f"{len(cleaned)} : vérifiez la saisie",
        )
    if not _SHAPE.match(cleaned):
        raise InvalidInput(
            "an INS is digits only, apart from 2A/2B in positions 6-7",
            french="l'INS ne contient que des chiffres (sauf 2A ou 2B aux positions 6 et 7)",
        )
    expected = control_key(cleaned[:13])
    if int(cleaned[13:]) != expected:
        raise InvalidInput(
            "the INS control key does not match its number",
            french="la clé de l'INS (ses deux derniers chiffres) ne correspond pas au numéro : "
            "vérifiez la saisie sur la carte Vitale",
        )
    return Ins(oid=oid, value=cleaned)


def parse_ins_token(token: str, *, test_mode: bool = False) -> Ins:
    """Parse ``urn:oid:<oid>|<value>``, ``<oid>|<value>`` or a bare value (INS-NIR)."""
    system, sep, value = token.partition("|")
    if not sep:
        return parse_ins(system, test_mode=test_mode)
    oid = system.removeprefix("urn:oid:")
    return parse_ins(value, oid, test_mode=test_mode)


def parse_cx(value: str, *, test_mode: bool = False) -> Ins:
    """An INS from an HL7 CX, as XDS and the VIHF assertion carry it: ``<INS>^^^&<OID>&ISO``
    with or without the identifier type (``^NH``); InvalidInput otherwise."""
    ident, sep, rest = value.strip().partition("^^^")
    authority = rest.split("^", 1)[0].strip("&").split("&")[0] if sep else ""
    if not ident or not authority:
        raise InvalidInput(f"{value[:60]!r} is not an INS as an HL7 CX (<INS>^^^&<OID>&ISO^NH)")
    return parse_ins(ident, authority, test_mode=test_mode)


def format_cx(ins: Ins) -> str:
    """The INS as an HL7 CX with the DMP's identifier type: ``<INS>^^^&<OID>&ISO^NH``."""
    return f"{ins.value}^^^&{ins.oid}&ISO^NH"


def make_ins_value(matricule: str) -> str:
    """Append the control key to a 13-character matricule (used by the demo and tests)."""
    return f"{matricule}{control_key(matricule):02d}"


@dataclass(frozen=True, slots=True)
class PatientKey:
    """The server's opaque key of a patient (FHIR resource ids carry it, never the INS)."""

    id: str


PatientRef = Ins | PatientKey


# -- what an NIR says about its holder (domain reference §3.1b) ------------------------------

# First digit: 1 and 2 for a man and a woman; 3 and 4 (born abroad, registration pending), 7 and 8
# (temporary numbers) keep the same parity. Temporary numbers say nothing reliable of the birth
# month or place.
_MALE_DIGITS = frozenset("1357")
_TEMPORARY_DIGITS = frozenset("78")


@dataclass(frozen=True, slots=True)
class NirTraits:
    """The traits an NIR encodes: sex, birth year (two digits), birth month (None: unknown or
    fictitious, codes 20-42 and 50-99), birth place (the 5-character INSEE code of the commune,
    or ``99`` + country code for a birth abroad; None for a temporary number)."""

    sex: str  # M or F
    year: int  # 0-99
    month: int | None
    place: str | None
    temporary: bool


def nir_traits(value: str) -> NirTraits:
    """Read the traits of a 15-character INS value (already validated by :func:`parse_ins`)."""
    v = value.upper()
    temporary = v[0] in _TEMPORARY_DIGITS
    month = int(v[3:5])
    return NirTraits(
        sex="M" if v[0] in _MALE_DIGITS else "F",
        year=int(v[1:3]),
        month=month if 1 <= month <= 12 and not temporary else None,
        place=None if temporary else v[5:10],
        temporary=temporary,
    )


def _same_place(nir_place: str, declared: str) -> bool:
    """Corsica: births before 1976 were registered under département 20, since then 2A/2B."""
    if nir_place == declared:
        return True
    corsica = ("20", "2A", "2B")
    return nir_place[:2] in corsica and declared[:2] in corsica and nir_place[2:] == declared[2:]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One trait of a declared identity that contradicts the INS, in English and in French."""

    english: str
    french: str


def _sex_fr(sex: str) -> str:
    return "masculin" if sex == "M" else "féminin"


def identity_mismatches(
    ins: Ins, *, sex: str, birth_year: int, birth_month: int, birth_place: str | None
) -> list[Mismatch]:
    """What in a declared identity contradicts the INS (empty: nothing). The indeterminate
    sex (U) and an unknown birth place contradict nothing; a temporary number and an unknown
    month code leave the month and the place unchecked."""
    t = nir_traits(ins.value)
    out: list[Mismatch] = []
    if sex in ("M", "F") and sex != t.sex:
        out.append(
            Mismatch(
                f"sex {sex} declared, the INS encodes {t.sex}",
                f"le sexe déclaré ({_sex_fr(sex)}) ne correspond pas à l'INS ({_sex_fr(t.sex)})",
            )
        )
    if birth_year % 100 != t.year:
        out.append(
            Mismatch(
                f"birth year {birth_year} declared, the INS encodes a year ending in {t.year:02d}",
                f"l'année de naissance déclarée ({birth_year}) ne correspond pas à l'INS "
                f"(année en {t.year:02d})",
            )
        )
    if t.month is not None and birth_month != t.month:
        out.append(
            Mismatch(
                f"birth month {birth_month:02d} declared, the INS encodes {t.month:02d}",
                f"le mois de naissance déclaré ({MONTHS[birth_month - 1]}) ne correspond "
                f"pas à l'INS ({MONTHS[t.month - 1]})",
            )
        )
    place = (birth_place or "").strip().upper()
    if t.place is not None and place and not _same_place(t.place, place):
        abroad = t.place.startswith("99")
        where_en = f"a birth abroad (country {t.place[2:]})" if abroad else t.place
        where_fr = f"naissance à l'étranger, pays {t.place[2:]}" if abroad else t.place
        out.append(
            Mismatch(
                f"birth place {place} declared, the INS encodes {where_en}",
                f"le lieu de naissance déclaré ({place}) ne correspond pas à l'INS ({where_fr})",
            )
        )
    return out


def spaced_ins(value: str) -> str:
    """The INS as the Vitale card prints it: 1 23 45 67 890 123 45."""
    v = value
    if len(v) != 15:
        return v
    return " ".join((v[0], v[1:3], v[3:5], v[5:7], v[7:10], v[10:13], v[13:15]))
