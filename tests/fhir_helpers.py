"""Helpers for the FHIR tests: published examples (tests/fixtures) with a test patient, tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dmp.auth import actors
from dmp.domain.ins import Ins
from dmp.identity.actor import Actor
from dmp.runtime import Runtime
from tests.factories import EXAMPLES

EXAMPLE_INS = "123456789012345"


# The ANS examples carry this placeholder as their CDA: a ClinicalDocument with no body, which the
# server refuses (issue 24: an empty CDA is no document). ``example`` gives it a body.
EMPTY_CDA = b'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3"/>'
CDA_WITH_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?><ClinicalDocument xmlns="urn:hl7-org:v3">'
    b"<component><structuredBody><component><section><title>Exemple</title>"
    b"<text>Document fictif.</text></section></component></structuredBody></component>"
    b"</ClinicalDocument>"
)


def _b64_sha1(content: bytes) -> str:
    return base64.b64encode(hashlib.sha1(content, usedforsecurity=False).digest()).decode()


def _give_the_cda_a_body(node: Any) -> None:
    """The placeholder CDA replaced by one with a body, and the size and hash that describe
    it with it."""
    if isinstance(node, dict):
        if node.get("data") == base64.b64encode(EMPTY_CDA).decode():
            node["data"] = base64.b64encode(CDA_WITH_BODY).decode()
        if node.get("hash") == _b64_sha1(EMPTY_CDA):
            node["hash"] = _b64_sha1(CDA_WITH_BODY)
            if "size" in node:
                node["size"] = len(CDA_WITH_BODY)
        for v in node.values():
            _give_the_cda_a_body(v)
    elif isinstance(node, list):
        for item in node:
            _give_the_cda_a_body(item)


def example(rel: str, ins: Ins, *, as_published: bool = False) -> Any:
    """An example file with its patient replaced by ``ins`` (test OID); unless
    ``as_published``, its placeholder CDA is given a body."""
    text = (EXAMPLES / rel).read_text(encoding="utf-8")
    text = text.replace(
        f"urn:oid:1.2.250.1.213.1.4.8|{EXAMPLE_INS}", f"urn:oid:{ins.oid}|{ins.value}"
    )
    text = text.replace(
        '"system": "urn:oid:1.2.250.1.213.1.4.8",\n      "value": "123456789012345"',
        f'"system": "urn:oid:{ins.oid}",\n      "value": "{ins.value}"',
    )
    doc = json.loads(text)
    _replace_patient_refs(doc, ins)
    if not as_published:
        _give_the_cda_a_body(doc)
    return doc


def _replace_patient_refs(node: Any, ins: Ins) -> None:
    if isinstance(node, dict):
        for k, v in list(node.items()):
            if k == "reference" and isinstance(v, str) and v.startswith("Patient/"):
                node[k] = f"Patient?identifier=urn:oid:{ins.oid}|{ins.value}"
            elif (
                k == "system"
                and v == "urn:oid:1.2.250.1.213.1.4.8"
                and node.get("value") == EXAMPLE_INS
            ):
                node["system"], node["value"] = f"urn:oid:{ins.oid}", ins.value
            else:
                _replace_patient_refs(v, ins)
    elif isinstance(node, list):
        for item in node:
            _replace_patient_refs(item, ins)


def bearer(
    rt: Runtime, actor: Actor, scopes: frozenset[str] | None = None, **kw: Any
) -> dict[str, str]:
    token = (
        actors.token_for(rt, actor)
        if scopes is None and not kw
        else _scoped(rt, actor, scopes, **kw)
    )
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}


def _scoped(rt: Runtime, actor: Actor, scopes: frozenset[str] | None, **kw: Any) -> str:
    from dmp.identity.tokens import issue_token

    return issue_token(
        actor, rt.token_secret, now=rt.clock.now(), ttl_seconds=300, scopes=scopes, **kw
    )


def rsa_key() -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": uuid.uuid4().hex, "alg": "RS384", "use": "sig"})
    return key, {"keys": [jwk]}


def ec_key() -> tuple[Any, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": uuid.uuid4().hex, "alg": "ES384", "use": "sig"})
    return key, {"keys": [jwk]}


def assertion(
    key: Any,
    jwks: dict[str, Any],
    client_id: str,
    aud: str,
    *,
    alg: str = "RS384",
    now: float | None = None,
    lifetime: int = 120,
    **claims: Any,
) -> str:
    now = now if now is not None else time.time()
    body = {
        "iss": client_id,
        "sub": client_id,
        "aud": aud,
        "jti": uuid.uuid4().hex,
        "iat": int(now),
        "exp": int(now) + lifetime,
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": jwks["keys"][0]["kid"]})


def read_example_bytes(rel: str) -> bytes:
    return (EXAMPLES / rel).read_bytes()


def iti105(ins: Ins, content: bytes, mime: str = "text/plain") -> Any:
    """The DMP guide's ITI-105 example about ``ins``, carrying ``content`` of type ``mime``."""
    docref = example(
        "pdsm4dmp/DocumentReference-example-td2-iti105-publication-simplifiee.json", ins
    )
    att = docref["content"][0]["attachment"]
    att["contentType"] = mime
    att["data"] = base64.b64encode(content).decode()
    if mime == "text/plain":
        docref["content"][0]["format"] = {"code": "urn:ihe:iti:xds-sd:text:2008"}
    return docref
