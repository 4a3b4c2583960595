"""The sandbox behind `fhirhose serve --demo`: a synthetic store plus client credentials.

`DIR/credentials.json` is what a user hands to a client (plain secrets and private
keys); `DIR/clients.json` is the server's side of the same registrations (scrypt
hashes and public keys only).
"""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.asymmetric import ec

from ..columns import Str
from ..errors import StoreError
from .auth import ClientIdentity, hash_secret
from .models import ClientRecord, ClientsFile, DemoClient, DemoCredentials
from ..store import Store
from .population import StorePopulation

__all__ = ["es384_jwk", "ensure_demo", "sandbox_orgs", "SANDBOX"]

log = logging.getLogger("fhirhose.server")

# The sandbox's organizations: (kind, beneficiaries) — a small ACO, a large ACO, a Part D sponsor.
SANDBOX = (("aco", 100), ("aco", 10_000), ("pdp", 1_000))


def _b64(n: int, size: int) -> str:
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()


def es384_jwk() -> tuple[dict, dict]:
    """A fresh P-384 key as (private JWK, public JWK), both with the same `kid`."""
    key = ec.generate_private_key(ec.SECP384R1())
    nums = key.private_numbers()
    pub = {
        "kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig",
        "x": _b64(nums.public_numbers.x, 48), "y": _b64(nums.public_numbers.y, 48),
    }
    pub["kid"] = secrets.token_hex(8)
    return {**pub, "d": _b64(nums.private_value, 48), "key_ops": ["sign"]}, {**pub, "key_ops": ["verify"]}


def _distinct(col: Str) -> list[str]:
    return sorted(set(col.to_list()) - {""})


def sandbox_orgs(store: Path) -> list[tuple[str, str]]:
    """(kind, organization id) of every ACO in the roster and every contract in the enrollment."""
    with Store.open(store) as snap:
        tables = snap.tables
    return [("aco", o) for o in _distinct(tables["roster"]["org_id"])] + [
        ("pdp", c) for c in _distinct(tables["enroll"]["cntrct_id"])
    ]


def generate_store(store: Path) -> None:
    """Write the synthetic sandbox store (the synth branch's generator)."""
    try:
        from ..store import synth  # late: only the demo needs the generator
    except ImportError:
        raise StoreError(f"{store}: no store, and the synthetic generator is not part of this build") from None
    synth.write(store, preset="demo", progress=True)


def ensure_demo(data: Path, fhir_base: str) -> DemoCredentials:
    """Make DIR a runnable sandbox: the store (generated if absent) and both credential files.

    Registrations are kept across runs (only `fhir_base` is rewritten), so a client's
    saved secrets keep working when the port changes.
    """
    data.mkdir(parents=True, exist_ok=True)
    store = data / "store"
    if not store.exists():
        log.info("generating the sandbox store in %s", store)
        generate_store(store)
    creds_path, clients_path = data / "credentials.json", data / "clients.json"
    if creds_path.exists() and clients_path.exists():
        creds = msgspec.json.decode(creds_path.read_bytes(), type=DemoCredentials)
        creds.fhir_base = fhir_base
    else:
        population = StorePopulation(str(store))
        clients, records = [], []
        for kind, org in sandbox_orgs(store):
            client_id, secret = secrets.token_hex(16), secrets.token_urlsafe(32)
            private, public = es384_jwk()
            who = ClientIdentity(client_id, org, kind)
            members = population.members(who, "all")
            n = 0 if members is None else int(members.rows.size)
            clients.append(DemoClient(org, kind, client_id, secret, private, population.groups(who), n))
            records.append(ClientRecord(client_id=client_id, organization=org, kind=kind,
                                        secret_hash=hash_secret(secret), jwks={"keys": [public]}))
        creds = DemoCredentials(fhir_base, clients)
        _write_private(clients_path, msgspec.json.format(msgspec.json.encode(ClientsFile(records)), indent=2))
    _write_private(creds_path, msgspec.json.format(msgspec.json.encode(creds), indent=2))
    return creds


def _write_private(path: Path, data: bytes) -> None:
    """Write a secrets file readable by its owner only, atomically."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    with open(tmp, "xb") as f:
        tmp.chmod(0o600)
        f.write(data + b"\n")
    tmp.replace(path)
