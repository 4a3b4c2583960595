"""Compact JWS (RFC 7515) for exactly the algorithms fhirhose accepts.

Public within fhirhose: the token service verifies with it and the client signs
its assertions with it. Strict on purpose: base64url without padding, JSON objects without duplicate
keys or NaN, an explicit algorithm list per call (so `none` or an HMAC
algorithm can never verify with a public key), ECDSA signatures in the raw
r||s form JWS uses.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

__all__ = ["JWSError", "b64e", "b64d", "parse", "verify", "sign"]

MAX_TOKEN = 16384
_B64 = re.compile(r"^[A-Za-z0-9_-]*$")
_EC = {"ES256": (hashes.SHA256, 32), "ES384": (hashes.SHA384, 48)}


class JWSError(ValueError):
    """The token is not a well-formed or correctly signed JWS (the caller maps it)."""


def b64e(raw: bytes) -> str:
    """base64url without padding (JWS's encoding)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64d(text: str) -> bytes:
    """Strict base64url decoding; JWSError on anything else."""
    if not _B64.match(text) or len(text) % 4 == 1:
        raise JWSError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _no_dupes(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise JWSError(f"duplicate member {k!r}")
        out[k] = v
    return out


def _bad_constant(name):
    raise JWSError(f"{name} is not JSON")


def _json_object(raw: bytes, what: str) -> dict:
    try:
        obj = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_dupes, parse_constant=_bad_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise JWSError(f"{what} is not JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict):
        raise JWSError(f"{what} is not a JSON object")
    return obj


def parse(token) -> tuple[dict, dict, bytes, bytes]:
    """(header, payload, signing input, signature) of a compact JWS; JWSError if malformed."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
        raise JWSError("missing or oversized token")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWSError("a JWS has three dot-separated parts")
    header = _json_object(b64d(parts[0]), "header")
    payload = _json_object(b64d(parts[1]), "payload")
    return header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), b64d(parts[2])


def verify(alg: str, key, signing_input: bytes, signature: bytes) -> bool:
    """Whether `signature` is valid for `alg` with `key` (bytes for HS256, public key otherwise)."""
    try:
        if alg == "HS256":
            if not isinstance(key, bytes):
                return False
            return hmac.compare_digest(hmac.new(key, signing_input, hashlib.sha256).digest(), signature)
        if alg == "RS384":
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA384())
            return True
        if alg in _EC:
            hash_cls, size = _EC[alg]
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size != size * 8 or len(signature) != 2 * size:
                return False
            r, s = int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hash_cls()))
            return True
    except InvalidSignature:
        return False
    return False


def sign(alg: str, key, header: dict, payload: dict) -> str:
    """A compact JWS; `key` is HMAC bytes (HS256) or a private key (RS384, ES256, ES384)."""
    head = b64e(json.dumps({**header, "alg": alg}, separators=(",", ":")).encode())
    body = b64e(json.dumps(payload, separators=(",", ":")).encode())
    data = f"{head}.{body}".encode("ascii")
    if alg == "HS256":
        sig = hmac.new(key, data, hashlib.sha256).digest()
    elif alg == "RS384":
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA384())
    elif alg in _EC:
        hash_cls, size = _EC[alg]
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hash_cls())))
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        raise JWSError(f"cannot sign with {alg!r}")
    return f"{head}.{body}.{b64e(sig)}"
