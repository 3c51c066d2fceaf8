"""When a caller gives an INS without its assigning authority, the doors look it up as an
INS-NIR (the national default). A record that is not found is then said to have been looked up
under that OID, so an integrator who forgot the system (or ``?oid=``) sees why.

The sentence is added to both refusals that say "no record was found" (unknown patient, and a
holder asking for another record): a caller still cannot tell them apart.
"""

from __future__ import annotations

from dmp.access.policy import Reason
from dmp.domain.ins import OID_NIA, OID_NIR, OID_TEST
from dmp.errors import DmpError, NotFound

_NOT_FOUND = frozenset({Reason.DENY_UNKNOWN_PATIENT.value, Reason.DENY_NOT_HOLDER.value})


def assumed_nir(how: str) -> str:
    """The sentence: what was left out, and the OID that was assumed."""
    return (
        f"{how}, so the INS was looked up as an INS-NIR (OID {OID_NIR}); "
        f"an INS-NIA has OID {OID_NIA}, a test INS {OID_TEST}"
    )


def explained(exc: DmpError, how: str) -> DmpError:
    """``exc`` with the OID that was assumed, when it says the record was not found.

    ``how`` says what the caller left out (``the identifier has no system``)."""
    if not isinstance(exc, NotFound) or exc.reason not in _NOT_FOUND:
        return exc
    return NotFound(f"{exc.message}: {assumed_nir(how)}", reason=exc.reason)
