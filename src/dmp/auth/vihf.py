"""VIHF: the signed SAML 2.0 assertion a structure's software sends in the WS-Security header of
every XDS.b request to the DMP (domain reference §6.1, the ANS "volet transmission" mapping).

The assertion is signed with the structure's certificate, registered for its software as
``dmp client add --certificate`` does (the certificate travels in the client's key set as a JWK
with ``x5c``). Here it is checked in this order, and every failure is a SOAP fault that says
which check failed without saying whether a client or a professional exists:

1. one ``saml2:Assertion``; its ``Issuer`` is the client id;
2. its XML signature (signxml: RSA or ECDSA with SHA-256 or stronger, exclusive or inclusive
   canonicalisation) verifies with a certificate registered for that client, in force now;
   everything below is read from what the signature covers, never from the unsigned message
   (no signature-wrapping);
3. the validity window (``Conditions/@NotBefore``, ``@NotOnOrAfter``): now inside it, at most
   :data:`MAX_LIFETIME` long;
4. replay: an assertion ``ID`` is accepted once (the same store as the SMART assertions' ids);
5. the attributes, mapped to the same :class:`~dmp.identity.tokens.Grant` the FHIR door builds:
   ``Subject/NameID`` is the acting professional (idNatPS), taken from the directory with
   profession, specialty and structure sector, and refused unless they work in the client's
   structure; ``Identifiant_Structure``, when present, must be that structure;
   ``xspa:subject:purposeofuse`` is the access mode (``normal``, ``bris_de_glace``,
   ``centre_15``, TRE_R248); ``xacml:resource:resource-id`` is the patient's INS (CX
   ``<INS>^^^&<OID>&ISO^NH``): the grant is bound to that patient, and an emergency grant must
   name one. The roles the assertion states (profession, specialty) are not trusted: the
   directory says them.

A bris de glace needs a justification (AC-8). VIHF 3.0 has no attribute for it; dmp reads it
from the attribute ``Justification`` (a free text of up to 1,000 characters), documented in
``docs/xds.md``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
import orjson
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from dmp.auth import actors
from dmp.domain.codes import PurposeOfUse
from dmp.domain.ins import Ins, parse_cx
from dmp.errors import InvalidInput, NotAuthenticated
from dmp.identity.tokens import Grant
from dmp.records import clients
from dmp.runtime import Runtime

SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
NS = {"saml": SAML, "wsse": WSSE}
PURPOSE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
RESOURCE = "urn:oasis:names:tc:xacml:2.0:resource:resource-id"
STRUCTURE = "Identifiant_Structure"
VERSION = "VIHF_Version"
JUSTIFICATION = "Justification"
VERSIONS = ("3.0", "4.0")
MAX_LIFETIME = timedelta(hours=1)
CLOCK_SKEW = timedelta(minutes=2)
REPLAY_PREFIX = "vihf:"
MAX_ID = 128 - len(REPLAY_PREFIX)  # the replay store keeps 128 characters

# One answer for an unknown client, a revoked one and a signature that does not verify.
NOT_ACCEPTED = (
    "the VIHF assertion was not accepted: unknown issuer, or a signature that does not verify "
    "with the certificates registered for it"
)
NOT_HERE = "the acting professional (NameID) is not a professional of the issuer's structure"


class VihfRefused(NotAuthenticated):
    """The assertion is missing or does not hold (a SOAP fault, wsse:FailedAuthentication)."""


@dataclass(frozen=True)
class Vihf:
    """What a verified assertion says, as the gate takes it."""

    grant: Grant
    client_id: str
    patient: Ins | None  # the record the assertion is for (xacml:resource:resource-id)


def verify(rt: Runtime, security: etree._Element | None) -> Vihf:
    """The grant a WS-Security header's VIHF assertion carries (:class:`VihfRefused` else)."""
    if security is None:
        raise VihfRefused("a VIHF assertion is required (WS-Security header, SAML 2.0)")
    found = security.findall("saml:Assertion", NS)
    if len(found) != 1:
        raise VihfRefused("the WS-Security header must carry one SAML 2.0 assertion")
    unsigned = found[0]
    issuer = (unsigned.findtext("saml:Issuer", namespaces=NS) or "").strip()
    if not issuer or len(issuer) > 64:
        raise VihfRefused(NOT_ACCEPTED)
    now = rt.clock.now()
    with rt.engine.connect() as conn:
        client = clients.get(conn, issuer)
    if client is None or client.revoked_at is not None:
        raise VihfRefused(NOT_ACCEPTED)
    assertion = _verified(unsigned, certificates(client.jwks, now))
    if (assertion.findtext("saml:Issuer", namespaces=NS) or "").strip() != issuer:
        raise VihfRefused(NOT_ACCEPTED)
    expires = _window(assertion, now)
    attrs = _attributes(assertion)
    version = attrs.get(VERSION, [None])[0]
    if version is not None and version not in VERSIONS:
        raise VihfRefused(f"VIHF_Version {version[:10]!r} is not served ({', '.join(VERSIONS)})")
    ps = (assertion.findtext("saml:Subject/saml:NameID", namespaces=NS) or "").strip()
    if not ps:
        raise VihfRefused("the assertion must name the acting professional (Subject/NameID)")
    structure = attrs.get(STRUCTURE, [None])[0]
    if structure is not None and structure != client.structure_id:
        raise VihfRefused(NOT_HERE)
    purpose = _purpose(attrs.get(PURPOSE, []))
    patient = _patient(rt, attrs.get(RESOURCE, []))
    justification = (attrs.get(JUSTIFICATION, [""])[0] or "").strip()[:1000] or None
    if purpose is PurposeOfUse.EMERGENCY:
        if justification is None:
            raise VihfRefused("bris_de_glace needs a justification (attribute Justification)")
        if patient is None:
            raise VihfRefused("bris_de_glace needs the patient's INS (xacml:resource:resource-id)")
    try:
        actor = actors.professional_actor(rt, ps[:64], client.structure_id)
    except NotAuthenticated:
        raise VihfRefused(NOT_HERE) from None
    assertion_id = assertion.get("ID", "")
    if not 1 <= len(assertion_id) <= MAX_ID:
        raise VihfRefused(f"the assertion needs an ID of 1 to {MAX_ID} characters")
    with rt.engine.begin() as conn:
        if not clients.use_jti(conn, issuer, REPLAY_PREFIX + assertion_id, expires, now):
            raise VihfRefused("this VIHF assertion was already used (replay)")
    grant = Grant(
        actor,
        scopes=frozenset(client.scopes.split()),
        purpose=purpose,
        justification=justification,
        client_id=issuer,
        patient=patient,
    )
    return Vihf(grant, issuer, patient)


def certificates(jwks: str, now: datetime) -> list[x509.Certificate]:
    """The client's certificates in force (the ``x5c`` of its registered keys)."""
    out = []
    for key in orjson.loads(jwks).get("keys", []):
        for der in (key.get("x5c") or [])[:1]:  # the first is the key's own certificate
            try:
                cert = x509.load_der_x509_certificate(base64.b64decode(der))
            except ValueError:
                continue
            if cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                out.append(cert)
    return out


def certificate_jwk(pem: bytes) -> dict[str, Any]:
    """A public JWK for a PEM certificate, carrying it in ``x5c`` (RFC 7517 §4.7): the
    structure's key for the SMART door and its certificate for VIHF."""
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InvalidInput("the certificate file is not a PEM X.509 certificate") from None
    public = cert.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    else:
        raise InvalidInput("the certificate's key must be RSA or EC")
    der = cert.public_bytes(serialization.Encoding.DER)
    jwk["x5c"] = [base64.b64encode(der).decode()]
    jwk["kid"] = cert.fingerprint(hashes.SHA256()).hex()[:32]
    jwk["use"] = "sig"
    return dict(jwk)


def _verified(assertion: etree._Element, certs: list[x509.Certificate]) -> etree._Element:
    """What the signature covers, verified with one of ``certs``."""
    from signxml.algorithms import SignatureMethod
    from signxml.exceptions import InvalidInput as SignxmlInput
    from signxml.exceptions import InvalidSignature
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    methods = frozenset(
        {
            SignatureMethod.RSA_SHA256,
            SignatureMethod.RSA_SHA384,
            SignatureMethod.RSA_SHA512,
            SignatureMethod.ECDSA_SHA256,
            SignatureMethod.ECDSA_SHA384,
            SignatureMethod.ECDSA_SHA512,
        }
    )
    # The assertion on its own: exclusive canonicalisation makes it the same bytes it was
    # inside the envelope, and nothing outside it can be referenced.
    standalone = etree.fromstring(etree.tostring(assertion))
    for cert in certs:
        try:
            result = XMLVerifier().verify(
                standalone,
                x509_cert=cert,
                ignore_ambiguous_key_info=True,
                expect_config=SignatureConfiguration(
                    signature_methods=methods, ignore_ambiguous_key_info=True
                ),
            )
        except (InvalidSignature, SignxmlInput, ValueError):
            continue
        signed = result.signed_xml if not isinstance(result, list) else None
        if signed is None or signed.tag != f"{{{SAML}}}Assertion":
            raise VihfRefused("the signature must cover the whole assertion")
        return signed
    raise VihfRefused(NOT_ACCEPTED)


def _window(assertion: etree._Element, now: datetime) -> datetime:
    conditions = assertion.find("saml:Conditions", NS)
    if conditions is None:
        raise VihfRefused("the assertion needs Conditions with NotBefore and NotOnOrAfter")
    try:
        start = datetime.fromisoformat(conditions.get("NotBefore", ""))
        end = datetime.fromisoformat(conditions.get("NotOnOrAfter", ""))
    except ValueError:
        raise VihfRefused("Conditions: NotBefore and NotOnOrAfter are xs:dateTime") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise VihfRefused("Conditions: NotBefore and NotOnOrAfter carry a time zone (Z)")
    if end - start > MAX_LIFETIME:
        raise VihfRefused(f"the assertion may be valid for {MAX_LIFETIME} at most")
    if now + CLOCK_SKEW < start:
        raise VihfRefused("the assertion is not valid yet (NotBefore)")
    if now >= end:
        raise VihfRefused("the assertion has expired (NotOnOrAfter)")
    return end


def _attributes(assertion: etree._Element) -> dict[str, list[str]]:
    """Attribute name -> values: a text value, or the ``code`` of a coded (CE) value."""
    out: dict[str, list[str]] = {}
    for attr in assertion.findall("saml:AttributeStatement/saml:Attribute", NS):
        name = attr.get("Name", "")
        for value in attr.findall("saml:AttributeValue", NS):
            coded = next(iter(value), None)
            text = coded.get("code") if coded is not None else value.text
            if text is not None and text.strip():
                out.setdefault(name, []).append(text.strip()[:1000])
    return out


def _purpose(values: list[str]) -> PurposeOfUse:
    if not values:
        return PurposeOfUse.NORMAL
    try:
        return PurposeOfUse(values[0])
    except ValueError:
        raise VihfRefused(
            f"unknown access mode {values[0][:40]!r} (purposeofuse: normal, bris_de_glace, "
            "centre_15)"
        ) from None


def _patient(rt: Runtime, values: list[str]) -> Ins | None:
    """The INS of ``xacml:resource:resource-id`` (HL7 CX ``<INS>^^^&<OID>&ISO^NH``)."""
    if not values:
        return None
    try:
        return parse_cx(values[0], test_mode=rt.settings.test_mode)
    except InvalidInput as exc:
        raise VihfRefused(f"resource-id is not an INS: {exc.message}") from None
