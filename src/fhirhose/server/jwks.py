"""Public keys by URL: the `jwks_fetcher` TokenService calls for credentials that
registered a JWKS URL instead of inline keys (SMART Backend Services allow both).

`JwksFetcher` fetches with aiohttp on the server's event loop and caches each
URL's key set for a short TTL, so a key the client rotates in is picked up
within `ttl` seconds while a burst of token requests costs one fetch. Only
https URLs are fetched unless `allow_http` (test mode); responses are size- and
time-bounded. Failures raise `JwksError` (an OSError), which the token service
treats as "no such key".
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp

__all__ = ["JwksFetcher", "JwksError"]

_MAX_BYTES = 65536


class JwksError(OSError):
    """A JWKS URL could not be fetched or is not a JWK Set."""


class JwksFetcher:
    """`fetcher(url) -> {"keys": [...]}`, callable from any thread but the loop's own.

    `loop` is the event loop the fetches run on (the server's); `ssl` an optional
    `ssl.SSLContext` (e.g. a private CA); `clock` the cache's time source."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        ttl: float = 60.0,
        timeout: float = 5.0,
        allow_http: bool = False,
        ssl=None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.loop = loop
        self.ttl = ttl
        self.timeout = timeout
        self.allow_http = allow_http
        self.ssl = ssl
        self.clock = clock
        self._cache: dict[str, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str) -> dict:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (self.allow_http and parts.scheme == "http"):
            raise JwksError(f"JWKS URL {url!r}: only https is fetched")
        now = self.clock()
        with self._lock:
            hit = self._cache.get(url)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise JwksError("JwksFetcher must be called off the event loop (it waits for the fetch)")
        future = asyncio.run_coroutine_threadsafe(self._fetch(url), self.loop)
        try:
            jwks = future.result(self.timeout + 1)
        except TimeoutError:
            future.cancel()
            raise JwksError(f"JWKS URL {url}: no answer within {self.timeout} s") from None
        with self._lock:
            self._cache[url] = (now, jwks)
        return jwks

    async def _fetch(self, url: str) -> dict:
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, ssl=self.ssl, allow_redirects=False,
                                       headers={"Accept": "application/json"}) as r:
                    if r.status != 200:
                        raise JwksError(f"JWKS URL {url}: HTTP {r.status}")
                    raw = await r.content.read(_MAX_BYTES + 1)
        except (TimeoutError, aiohttp.ClientError) as e:
            raise JwksError(f"JWKS URL {url}: {type(e).__name__}: {e}") from None
        if len(raw) > _MAX_BYTES:
            raise JwksError(f"JWKS URL {url}: larger than {_MAX_BYTES} bytes")
        try:
            jwks = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise JwksError(f"JWKS URL {url}: not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise JwksError(f'JWKS URL {url}: not a JWK Set ({{"keys": [...]}})')
        return jwks
