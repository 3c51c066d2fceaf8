"""Registering an API client (a structure's software) with its public keys: an operator job."""

from __future__ import annotations

import json
import secrets
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWKSet

from dmp.errors import InvalidInput
from dmp.identity.scopes import SUPPORTED_SCOPES
from dmp.records import clients, directory
from dmp.runtime import Runtime


def register_client(
    rt: Runtime,
    *,
    name: str,
    structure_id: str,
    jwks: dict[str, Any],
    scopes: frozenset[str] | None = None,
) -> str:
    """Register a structure's software with its public keys; returns the client id."""
    try:
        keys = PyJWKSet.from_dict(jwks)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the key set is not a valid JWKS: {exc}") from None
    private = (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)
    if any(isinstance(key.key, private) for key in keys.keys) or any(
        isinstance(k, dict) and "d" in k for k in jwks.get("keys", [])
    ):
        raise InvalidInput("register public keys only: this key set holds a private key")
    granted = scopes or frozenset({"user/*.cruds"})
    unknown = granted - SUPPORTED_SCOPES
    if unknown:
        raise InvalidInput(f"unknown scopes: {' '.join(sorted(unknown))}")
    client_id = f"client-{secrets.token_hex(8)}"
    with rt.engine.begin() as conn:
        if not directory.structure_exists(conn, structure_id):
            raise InvalidInput(f"structure {structure_id} is not in the directory")
        clients.insert(
            conn,
            {
                "client_id": client_id,
                "name": name[:200],
                "structure_id": structure_id,
                "jwks": json.dumps(jwks),
                "scopes": " ".join(sorted(granted)),
                "created_at": rt.clock.now(),
            },
        )
    return client_id
