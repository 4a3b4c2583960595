"""The sandbox behind `fhirhose serve --demo`: a synthetic store, its organizations
registered in the access database, and published sandbox credentials.

`DIR/credentials.json` is what a user hands to a client: per organization a client
id and secret (HTTP Basic) and a private ES384 JWK whose public half is registered
(SMART Backend Services), both for one sandbox credential. The access database holds
only the secret's scrypt hash and the public key. Sponsors get an attestor (CEO)
who attested on the generator's attestation date, so their data starts there.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from pathlib import Path
from typing import Sequence

import msgspec
import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from ..access import AccessConfig, AccessDB, Actor, Principal, plan_scope
from ..access.config import kind_for_id
from ..errors import FhirhoseError, StoreError
from ..log import get_logger
from ..store import Store, fixed
from ..synth import SynthOrg
from .models import DemoClient, DemoCredentials

__all__ = ["es384_jwk", "ensure_demo", "sandbox_orgs", "sandbox_access_config", "GROUPS"]

log = get_logger(__name__)

GROUPS = ["all", "runout"]


def _kind(org: SynthOrg) -> str | None:
    """The access kind of a sandbox organization: sponsors by kind, ACOs and other model
    entities by their id (the model-entity table's id patterns); None: no model's id."""
    return "sponsor" if org.kind == "pdp" else kind_for_id(org.org_id)


def sandbox_access_config(**overrides) -> AccessConfig:
    """The sandbox's access rules: CMS's, except that the synthetic rosters (delivered
    once, when the sandbox was generated) count as current for a year, not 50 days."""
    return AccessConfig(**{"stale_roster_days": 366, "runout_cutoff_days": 366, **overrides})


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


def sandbox_orgs(store: Path) -> list[SynthOrg]:
    """The sandbox's organizations: the generator's `orgs.json` beside the store, or, for
    a store built otherwise, every roster ACO (Shared Savings) and every enrollment
    contract (a sponsor that attested on Jan 1 of its first enrollment year)."""
    listed = store / "orgs.json"
    if listed.exists():
        return msgspec.json.decode(listed.read_bytes(), type=list[SynthOrg])
    with Store.open(store) as snap:
        tables = snap.tables
        acos = sorted(set(tables["roster"]["org_id"].to_list()) - {""})
        contracts = fixed(tables["enroll"]["cntrct_id"])
        years = tables["enroll"]["year"].values.astype(np.int64)
    order = np.lexsort((years, contracts))  # by contract, earliest year first
    firsts = order[np.r_[True, contracts[order][1:] != contracts[order][:-1]]] if len(order) else order
    first = {contracts[i].decode(): int(years[i]) for i in firsts if contracts[i]}
    return [SynthOrg(org_id=o, kind="aco", name=f"ACO {o}", program="Shared Savings", contract_ids=(o,))
            for o in acos] + [
        SynthOrg(org_id=c, kind="pdp", name=f"Sponsor {c}", program="Part D", contract_ids=(c,),
                 attestation_date=dt.date(y, 1, 1))
        for c, y in sorted(first.items())
    ]


def generate_store(store: Path, today: dt.date) -> None:
    """Write the synthetic sandbox store (preset "demo", history through yesterday: the
    generator stamps loads with times of day, and a resource stamped later than an
    export's transaction time would be left out of it)."""
    from .. import synth  # late: only the demo needs the generator

    synth.write(store, preset="demo", as_of=today - dt.timedelta(days=1), progress=True)


def _timestamp(day: dt.date) -> float:
    return dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()


def _register(db: AccessDB, org: SynthOrg, now: float) -> tuple[str, str, dict, str]:
    """Create the organization (if new) with its users and a sandbox credential:
    (client id, secret, private JWK, credential id)."""
    op = Actor.system("demo")
    kind = _kind(org)
    assert kind is not None  # ensure_demo registers only organizations with a kind
    if org.org_id not in {o.id for o in db.orgs.list()}:
        db.orgs.create(op, org.org_id, kind, org.name)
        if kind == "sponsor":
            for c in org.contract_ids:
                db.orgs.add_contract(op, org.org_id, c)
    ops, _ = db.orgs.add_user(op, org.org_id, "Sandbox data operations", f"ops@{org.org_id.lower()}.example",
                              "data_ops")
    if kind == "sponsor":
        ceo, _ = db.orgs.add_user(op, org.org_id, "Sandbox attestor", f"ceo@{org.org_id.lower()}.example",
                                  "attestor", "CEO")
        when = _timestamp(org.attestation_date) if org.attestation_date else now
        for c in org.contract_ids:
            db.orgs.attest(Actor.user(ceo.id), org.org_id, c, now=min(when, now))
    private, public = es384_jwk()
    cred, secret = db.credentials.issue(Actor.user(ops.id), org.org_id, env="sandbox", label="sandbox (demo)",
                                        jwks={"keys": [public]})
    return cred.client_id, secret, private, cred.id


def _beneficiaries(db: AccessDB, tables, org_id: str, client_id: str, cred_id: str, now: float) -> int:
    """How many beneficiaries `Group/all` gives the organization today (0 when refused)."""
    org = db.orgs.get(org_id)
    types = db.config.rules(org.kind).types
    who = Principal(org_id, org.kind, client_id, cred_id, ("system/*.read",), types, "sandbox", "demo", now)
    try:
        return int(len(plan_scope(db, tables, who, "all", None, now).bene_rows))
    except FhirhoseError as e:
        log.warning("sandbox organization %s gets no data today: %s", org_id, e)
        return 0


def _registered(db: AccessDB, clients: Sequence[DemoClient]) -> bool:
    return bool(clients) and all(db.credentials.by_client_id(c.client_id) is not None for c in clients)


def ensure_demo(data: Path, fhir_base: str, db: AccessDB, now: float | None = None,
                fhir_base_v3: str | None = None) -> DemoCredentials:
    """Make DIR a runnable sandbox: the store (generated if absent), its organizations in
    the access database `db` (each model entity as the kind its id names), and
    `DIR/credentials.json` (`fhir_base`, and `fhir_base_v3` where BCDA v3 is served).

    Registrations are kept across runs (only `fhir_base` is rewritten), so a client's
    saved secrets keep working when the port changes.
    """
    now = dt.datetime.now(dt.timezone.utc).timestamp() if now is None else now
    today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
    data.mkdir(parents=True, exist_ok=True)
    store = data / "store"
    if not (store / "CURRENT").exists():
        if store.exists() and any(store.iterdir()):
            raise StoreError(f"{store}: exists but is not a store; remove it to let --demo generate one")
        log.info("generating the sandbox store in %s (a minute or so)", store)
        generate_store(store, today)
    creds_path = data / "credentials.json"
    creds = None
    if creds_path.exists():
        creds = msgspec.json.decode(creds_path.read_bytes(), type=DemoCredentials)
        if _registered(db, creds.clients):
            creds.fhir_base = fhir_base
        else:
            log.info("%s names clients the access database does not know: registering new ones", creds_path)
            creds = None
    if creds is None:
        clients = []
        with Store.open(store) as snap:
            for org in sandbox_orgs(store):
                model = _kind(org)
                if model is None:
                    log.warning("sandbox organization %s: its id is no model entity's (%s); not registered",
                                org.org_id, ", ".join(f"{k} {r.id_pattern}" for k, r in db.config.kinds.items()
                                                      if r.id_pattern))
                    continue
                client_id, secret, private, cred_id = _register(db, org, now)
                n = _beneficiaries(db, snap.tables, org.org_id, client_id, cred_id, now)
                kind = "pdp" if org.kind == "pdp" else "aco"
                clients.append(DemoClient(org.org_id, kind, client_id, secret, private, list(GROUPS), n, model))
        creds = DemoCredentials(fhir_base, clients)
    creds.fhir_base_v3 = fhir_base_v3
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
