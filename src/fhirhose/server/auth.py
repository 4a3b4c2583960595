"""What the server adds to the access library's authentication: the client address
IP allowlists are checked against, and the admin API's operator credential.

Tokens, credentials and every per-request check live in `fhirhose.access`
(`AccessAuthenticator`, `TokenService`): the server keeps no client registry of
its own.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from aiohttp import web

from ..errors import InputError

__all__ = ["client_address", "operator_key"]


def _networks(entries: Iterable[str]):
    nets = []
    for e in entries:
        try:
            nets.append(ipaddress.ip_network(str(e).strip(), strict=False))
        except ValueError:
            raise InputError(f"trusted proxy {e!r}: not an IP address or CIDR range") from None
    return nets


def _ip(text: str):
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr


def client_address(trusted_proxies: Iterable[str] = ()) -> Callable[[web.Request], str | None]:
    """`request -> client IP`: the TCP peer, unless the peer is a trusted proxy; then the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries left
    of it could be forged by the client). A malformed entry is returned as written, so
    no allowlist matches it."""
    nets = _networks(trusted_proxies)

    def trusted(addr) -> bool:
        return addr is not None and any(addr.version == n.version and addr in n for n in nets)

    def resolve(request: web.Request) -> str | None:
        peer = request.remote
        if not nets or not trusted(_ip(peer or "")):
            return peer
        hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
        for hop in reversed(hops):
            addr = _ip(hop)
            if addr is None:
                return hop[:64]
            if not trusted(addr):
                return str(addr)
        return peer

    return resolve


def operator_key(path: Path) -> str:
    """The operator's admin API key, created (0600) on first start so it survives restarts."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(32)
        with open(path, "x") as f:
            path.chmod(0o600)
            f.write(key + "\n")
        return key
