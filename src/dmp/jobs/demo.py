"""Fictional demo data: a pharmacy in Amboise (Indre-et-Loire) opens records; a GP, a
cardiologist, a nurse and a regulation doctor use them. Every name and number is invented; the
patients carry INS numbers under the demonstration OID (1.2.250.1.213.1.4.11).

Everything goes through the access gate, so the demo also fills the audit trail.
"""

from __future__ import annotations

import contextlib
import random
from datetime import date, timedelta

from dmp.access.views import Demographics, NewDocument
from dmp.auth import actors as identities
from dmp.auth.portal import Portal
from dmp.domain.codes import CreationChannel
from dmp.domain.ins import OID_DEMO, Ins, make_ins_value
from dmp.errors import Conflict, Forbidden
from dmp.identity.actor import Actor, ActorKind, system_actor
from dmp.jobs.directory import store_directory
from dmp.runtime import Runtime

PHARMACY = "390000000000033"
GP_PRACTICE = "C20000000011"
HOSPITAL = "1370099001"
NURSE_PRACTICE = "C20000000029"
SAMU = "1370099002"

_STRUCTURES = [
    (
        PHARMACY,
        "PHARMACIE DES REMPARTS (DEMO)",
        None,
        "90000000000033",
        "SA33",
        "Pharmacie d'officine",
        "37003",
    ),
    (
        GP_PRACTICE,
        "CABINET MEDICAL DE LA LOIRE (DEMO)",
        None,
        None,
        "SA07",
        "Cabinet individuel",
        "37003",
    ),
    (
        HOSPITAL,
        "CENTRE HOSPITALIER DEMO TOURS",
        "370099001",
        None,
        "SA01",
        "Etablissement public de santé",
        "37261",
    ),
    (
        NURSE_PRACTICE,
        "CABINET INFIRMIER DES COTEAUX (DEMO)",
        None,
        None,
        "SA07",
        "Cabinet individuel",
        "37003",
    ),
    (
        SAMU,
        "SAMU 37 CENTRE 15 (DEMO)",
        "370099002",
        None,
        "SA01",
        "Etablissement public de santé",
        "37261",
    ),
]

PHARMACIST = "820000000018"
GP = "820000000026"
CARDIOLOGIST = "820000000034"
NURSE = "820000000042"
REGULATOR = "820000000059"

_PROFESSIONALS = [
    (PHARMACIST, "ARDOISE", "CAMILLE", "21", "Pharmacien", None, None, "A", PHARMACY),
    (GP, "BRUYERE", "LOUISE", "10", "Médecin", "SM54", "Médecine générale", None, GP_PRACTICE),
    (
        CARDIOLOGIST,
        "CHARMILLE",
        "NOE",
        "10",
        "Médecin",
        "SM04",
        "Cardiologie et maladies vasculaires",
        None,
        HOSPITAL,
    ),
    (NURSE, "DOUCETTE", "SACHA", "60", "Infirmier", None, None, None, NURSE_PRACTICE),
    (
        REGULATOR,
        "EGLANTINE",
        "MAEL",
        "10",
        "Médecin",
        "SM26",
        "Qualifié en Médecine Générale",
        None,
        SAMU,
    ),
]

_GIVEN = [
    "ALIX",
    "BASILE",
    "CELESTE",
    "DORIAN",
    "ELOISE",
    "FLAVIEN",
    "GAIA",
    "HELIOS",
    "IRIS",
    "JOSSELIN",
    "KAYLA",
    "LORIS",
]
_FAMILY = [
    "AUBEPINE",
    "BOULEAU",
    "CORMIER",
    "DAUPHINELLE",
    "EPICEA",
    "FRENE",
    "GENEVRIER",
    "HOUX",
    "IF",
    "JONQUILLE",
    "KETMIE",
    "LILAS",
]
_COMMUNES = [
    "37003",
    "37003",
    "37003",
    "37261",
    "37261",
    "37122",
    "37003",
    "37214",
    "37003",
    "37261",
    "37003",
    "37003",
]


_STRUCTURE_OF = {row[0]: row[-1] for row in _PROFESSIONALS}


def demo_ins(i: int) -> Ins:
    sex = 1 + i % 2
    matricule = f"{sex}{70 + i:02d}{(i % 12) + 1:02d}37003{100 + i:03d}"
    return Ins(OID_DEMO, make_ins_value(matricule))


def _directory(rt: Runtime) -> None:
    now = rt.clock.now()
    structs: list[dict[str, object]] = [
        {
            "id": sid,
            "name": name,
            "finess": finess,
            "siret": siret,
            "sector_code": code,
            "sector_label": label,
            "commune": commune,
            "departement": "37",
            "updated_at": now,
        }
        for sid, name, finess, siret, code, label, commune in _STRUCTURES
    ]
    pros: list[dict[str, object]] = []
    acts: list[dict[str, object]] = []
    for ps, family, given, prof, plabel, spec, slabel, section, sid in _PROFESSIONALS:
        pros.append(
            {
                "id_nat_ps": ps,
                "family_name": family,
                "given_name": given,
                "profession_code": prof,
                "profession_label": plabel,
                "specialty_code": spec,
                "specialty_label": slabel,
                "pharmacist_section": section,
                "updated_at": now,
            }
        )
        acts.append({"id_nat_ps": ps, "structure_id": sid, "mode": "Libéral"})
    store_directory(rt, pros, structs, acts)


def _document(
    rng: random.Random,
    type_code: str,
    title: str,
    days_ago: int,
    rt: Runtime,
    *,
    masked_ps: bool = False,
) -> tuple[NewDocument, bytes]:
    when = rt.clock.now() - timedelta(days=days_ago)
    text = (
        f"{title}\nDocument fictif de démonstration généré le {when:%d/%m/%Y}.\n"
        f"Observation : examen sans particularité (valeur {rng.randint(1, 99)}).\n"
    )
    meta = NewDocument(
        type_code=type_code,
        format_code="urn:ihe:iti:xds-sd:text:2008",
        mime_type="text/plain",
        title=title,
        creation_time=when,
        service_start=when,
        masked_ps=masked_ps,
    )
    return meta, text.encode("utf-8")


def load_demo(rt: Runtime) -> list[str]:
    """Load the demo; running it twice leaves the first run's records as they were."""
    rng = random.Random(37400)  # noqa: S311 - demo content, not security
    _directory(rt)
    desk = identities.desk_actor("desk-agent-demo", PHARMACY)
    actors: dict[str, Actor] = {
        ps: identities.professional_actor(rt, ps) for ps, *_ in _PROFESSIONALS
    }
    opened = 0
    for i in range(len(_GIVEN)):
        ins = demo_ins(i)
        try:
            rt.access(desk).open_record(
                ins,
                Demographics(
                    _FAMILY[i],
                    _GIVEN[i],
                    "M" if i % 2 == 0 else "F",
                    date(1970 + i, (i % 12) + 1, 1 + i),
                    _COMMUNES[i],
                ),
                channel=CreationChannel.PHARMACY,
                patient_consent=True,
            )
            opened += 1
        except Conflict:
            continue
        gp = rt.access(actors[GP])
        if i < 8:
            gp.declare_consent(ins)
            meta, content = _document(rng, "60591-5", "Synthèse médicale", 30 + i, rt)
            gp.deposit_document(ins, meta, content)
            meta, content = _document(rng, "11488-4", "Compte rendu de consultation", 3 + i, rt)
            gp.deposit_document(ins, meta, content)
            gp.search_documents(ins)
        if i % 3 == 0:
            meta, content = _document(
                rng,
                "34112-3",
                "Compte rendu d'hospitalisation en cardiologie",
                60 + i,
                rt,
                masked_ps=(i == 3),
            )
            rt.access(actors[CARDIOLOGIST]).deposit_document(ins, meta, content)
        if i % 2 == 0:  # half of the holders activated their online account
            rt.access(identities.patient_actor(rt, ins)).activate_account(ins)
        if i % 4 == 1:
            nurse = rt.access(actors[NURSE])
            nurse.declare_consent(ins)
            page = nurse.search_documents(ins)
            if page.items:
                nurse.read_content(ins, page.items[0].logical_id)
        if i == 2:
            # The pharmacist has no consent here: refused, and the patient will see it.
            with contextlib.suppress(Forbidden):
                rt.access(actors[PHARMACIST]).search_documents(ins)
    if opened:
        rt.access(system_actor("demo")).add_representative(
            demo_ins(11), "tuteur-demo", "TUTEUR DEMO", "tuteur"
        )
    names = {row[0]: row[1] for row in _STRUCTURES}
    return [
        f"demo: {opened} records opened by the pharmacy in Amboise (37), "
        f"{len(_PROFESSIONALS)} professionals in the directory",
        f"demo patient INS (OID {OID_DEMO}): "
        f"{demo_ins(0).value} .. {demo_ins(len(_GIVEN) - 1).value}",
        "professionals (idNatPS, at structure idNatStruct: a client registered for that "
        "structure acts for them):",
        *(
            f"  {role}: {ps} at {_STRUCTURE_OF[ps]} {names[_STRUCTURE_OF[ps]]}"
            for role, ps in (
                ("GP", GP),
                ("cardiologist", CARDIOLOGIST),
                ("nurse", NURSE),
                ("pharmacist", PHARMACIST),
                ("regulation doctor", REGULATOR),
            )
        ),
        *_portal_invitations(rt),
    ]


def _portal_invitations(rt: Runtime) -> list[str]:
    """Portal accounts for walking the story in a browser (new codes at every run)."""
    portal = Portal(rt)
    lines = ["portal (http://127.0.0.1:8000/portail, 'Activer mon compte'): login / one-time code"]
    for kind, login, structure, who in (
        (ActorKind.PROFESSIONAL, PHARMACIST, PHARMACY, "pharmacist, registration desk"),
        (ActorKind.PROFESSIONAL, GP, GP_PRACTICE, "GP"),
        (ActorKind.PROFESSIONAL, NURSE, NURSE_PRACTICE, "nurse"),
    ):
        code, _ = portal.invite(kind=kind, login=login, by="system:demo", structure_id=structure)
        lines.append(f"  {who}: {login} / {code}")
    code, _ = portal.invite(
        kind=ActorKind.REPRESENTATIVE, login="tuteur-demo", by="system:demo", ins=demo_ins(11)
    )
    lines.append(f"  legal representative of {demo_ins(11).value}: tuteur-demo / {code}")
    n = len(_GIVEN)
    sex = "M" if n % 2 == 0 else "F"
    lines += [
        f"  a patient with no record yet, for the desk: INS {demo_ins(n).value} (identifier "
        "type 'Démonstration'); type in the desk form, as on their identity card:",
        "    Nom de naissance: NOUVEL   Prénoms: ALEX   "
        f"Sexe: {'Masculin' if sex == 'M' else 'Féminin'}   "
        f"Date de naissance: {date(1970 + n, (n % 12) + 1, 1 + n).isoformat()}",
        "    Code INSEE de la commune de résidence: 37003 (Amboise)   "
        "Pièce d'identité: Carte nationale d'identité",
        "    Adresse: 1 place du Marché, 37400 Amboise",
    ]
    return lines
