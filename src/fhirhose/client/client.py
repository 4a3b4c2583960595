"""`BulkClient`: one FHIR Bulk Data export from kick-off to verified local files.

The flow follows the Bulk Data Access IG (v2/v3): discovery of the token endpoint in
`.well-known/smart-configuration` (or the CapabilityStatement's oauth-uris), kick-off
(GET with query parameters, or POST with a `Parameters` body when patients are named),
status polling that honours `Retry-After` (also on 429), and downloads that start as
soon as a manifest — partial ones included (`allowPartialManifests`, `link` next) —
lists a file. Downloads run `concurrency` at a time, ask for gzip/zstd, continue an
interrupted file with `Range` + `If-Range`, and are verified (see `files.finish`): the
digest of the bytes as they arrive against the manifest's stored digest or the response's
`Repr-Digest`, the codec's own check and the line count while decoding, and BCDA's
uncompressed checksum when that is all the server gives.
The local `manifest.json` points at the local files, each item keeping its source URL. Everything
needed to continue lives in the output folder's state file; `resume(status_url, out_dir)` picks it up.

This module is the client and the kick-off; `pull` polls the status and reads the manifests,
`download` fetches and verifies the files, `manifest` reads and writes manifest items.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import time
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, urljoin

import aiohttp
import msgspec

from ..errors import ClientError
from ..log import get_logger
from ._http import NET_ERRORS, ServerError, error_text, network_error, retry_after
from .auth import JwkAuth, SecretAuth, Tokens
from .progress import Progress
from .pull import Pull
from .state import FileState, PullState, SinceState

__all__ = ["BulkClient", "PullResult", "LEVELS"]

log = get_logger(__name__)

FHIR_JSON = "application/fhir+json"
LEVELS = ("system", "patient", "group")


class PullResult(msgspec.Struct, kw_only=True):
    """What one pull did. `seconds` runs from kick-off (or resume) to the last byte received."""

    status_url: str
    request: str | None
    transaction_time: str | None
    out_dir: str
    manifest_path: str
    files: list[FileState]
    resources: dict[str, int]  # output lines by resource type
    errors: int  # OperationOutcome lines in the manifest's error files
    ndjson_bytes: int  # decoded size of every file
    stored_bytes: int  # size of the files as kept on disk
    wire_bytes: int  # body bytes received by this run (less than stored when resumed)
    seconds: float
    total_seconds: float  # including verification and the DELETE
    polls: int
    throttled: int  # 429 answers to status requests
    tokens: int  # access tokens fetched
    since: str | None = None
    deleted: bool = False

    @property
    def resource_count(self) -> int:
        return sum(self.resources.values())



def _unreachable_is_client_error(method):
    """A request that got no HTTP answer (refused, DNS, TLS, timeout, a bad URL) surfaces
    as a `ClientError` naming the server, not as an aiohttp exception."""

    @functools.wraps(method)
    async def wrapper(self: BulkClient, *args, **kw):
        try:
            return await method(self, *args, **kw)
        except (TimeoutError, aiohttp.ClientError, ssl.SSLError) as e:
            raise ClientError(network_error(self.fhir_base, e)) from None

    return wrapper


class BulkClient:
    """A Bulk Data client for one FHIR server (see module doc).

    `auth` is `SecretAuth`, `JwkAuth` or None (an open server). `token_url` skips
    discovery. `keep_compressed` keeps the gzip/zstd bytes as sent (`.ndjson.gz`)
    instead of writing NDJSON; either way the NDJSON is verified. `delete` sends DELETE
    to the status URL once every file is in. `since_file` is where incremental pulls
    keep their transactionTime per organization (`organization` names it; default the
    client id).
    """

    def __init__(
        self,
        fhir_base: str,
        auth: SecretAuth | JwkAuth | None = None,
        *,
        token_url: str | None = None,
        concurrency: int = 4,
        keep_compressed: bool = False,
        accept_encoding: Iterable[str] = ("gzip", "zstd"),
        progress: Progress | None = None,
        delete: bool = True,
        since_file: str | os.PathLike | None = None,
        organization: str | None = None,
        read_size: int = 1 << 20,
        timeout: float = 300.0,
        session: aiohttp.ClientSession | None = None,
    ):
        if concurrency < 1:
            raise ClientError(f"concurrency {concurrency}: at least one download at a time")
        self.fhir_base = fhir_base.rstrip("/")
        self.auth = auth
        self.token_url = token_url
        self.concurrency = concurrency
        self.keep_compressed = keep_compressed
        self.accept_encoding = ", ".join(accept_encoding) or "identity"
        self.progress = progress or Progress()
        self.delete = delete
        self.since_file = since_file
        self.organization = organization
        self.read_size = read_size
        self.timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout)
        self._session = session
        self._own_session = session is None
        self._tokens: Tokens | None = None

    # --- session ------------------------------------------------------------------------------

    async def __aenter__(self) -> BulkClient:
        await self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=self.concurrency + 4))
            self._own_session = True
        return self._session

    async def close(self) -> None:
        """Close the HTTP session (when the client opened it)."""
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None
            self._tokens = None

    @property
    def tokens_issued(self) -> int:
        return self._tokens.issued if self._tokens else 0

    # --- discovery and requests -----------------------------------------------------------------

    async def discover(self) -> str:
        """The token endpoint: smart-configuration, else the CapabilityStatement's oauth-uris."""
        session = await self._open()
        for path in ("/.well-known/smart-configuration", "/metadata"):
            async with session.get(self.fhir_base + path, headers={"Accept": "application/json"}) as r:
                if r.status != 200:
                    continue
                try:
                    doc = json.loads(await r.read())
                except ValueError:
                    continue
            if not isinstance(doc, dict):
                continue
            url = doc.get("token_endpoint") if path.startswith("/.well") else _oauth_token_uri(doc)
            if url:
                return urljoin(self.fhir_base + "/", url)
        raise ClientError(f"{self.fhir_base}: no token endpoint in .well-known/smart-configuration or /metadata "
                          f"(pass token_url)")

    async def _ready(self) -> aiohttp.ClientSession:
        session = await self._open()
        if self.auth is not None and self._tokens is None:
            self.token_url = self.token_url or await self.discover()
            self._tokens = Tokens(self.auth, self.token_url, session)
        return session

    async def _send(self, method: str, url: str, *, auth: bool = True, headers: dict | None = None,
                    **kw) -> aiohttp.ClientResponse:
        """One request with the current bearer token; a 401 renews the token and retries once."""
        session = await self._ready()
        renewed = False
        while True:
            h = dict(headers or {})
            token = None
            if auth and self._tokens is not None:
                token = await self._tokens.get()
                h["Authorization"] = f"Bearer {token}"
            r = await session.request(method, url, headers=h, **kw)
            if r.status == 401 and token is not None and self._tokens is not None and not renewed:
                r.release()
                await self._tokens.invalidate(token)
                renewed = True
                continue
            return r

    # --- public API ---------------------------------------------------------------------------

    @_unreachable_is_client_error
    async def export(
        self,
        level: str = "group",
        group: str | None = None,
        *,
        out_dir: str | os.PathLike,
        types: Iterable[str] | None = None,
        since: str | None = None,
        until: str | None = None,
        type_filters: Iterable[str] = (),
        elements: Iterable[str] = (),
        output_format: str | None = None,
        patients: Iterable[str] = (),
        post: bool = False,
        partial: bool = True,
        lenient: bool = False,
        incremental: bool = False,
    ) -> PullResult:
        """Kick off an export at `level` (system | patient | group, `group` defaults to "all"),
        download every file into `out_dir` and verify it.

        `patients` (Patient ids or references) go in a POST `Parameters` body, as the IG
        requires; `post` sends the other parameters that way too. `partial` asks for
        partial manifests so downloads start while the export runs (retried without it
        when the server rejects the parameter). `incremental` uses the last complete
        pull's transactionTime as `_since` (unless `since` is given) and records this one's.
        """
        if level not in LEVELS:
            raise ClientError(f"level {level!r}: one of {', '.join(LEVELS)}")
        patients = list(patients)
        if level == "system" and (group or patients):
            raise ClientError("a system-level export takes no group or patients")
        out = Path(out_dir)
        types = list(types) if types else None
        path = {"system": "/$export", "patient": "/Patient/$export",
                "group": f"/Group/{quote(group or 'all', safe='')}/$export"}[level]
        since_state = key = None
        if incremental:
            since_state = SinceState(self.since_file or out.parent / ".fhirhose-since.json")
            who = self.organization or getattr(self.auth, "client_id", None) or "anonymous"
            key = SinceState.key(self.fhir_base, who, path, types)
            since = since or since_state.get(key)
        params: list[tuple[str, str]] = []
        if types:
            params.append(("_type", ",".join(types)))
        for name, value in (("_since", since), ("_until", until), ("_outputFormat", output_format)):
            if value:
                params.append((name, value))
        params += [("_typeFilter", q) for q in type_filters]
        if elements := list(elements):
            params.append(("_elements", ",".join(elements)))
        refs = [p if "/" in p else f"Patient/{p}" for p in patients]
        if out.exists() and not out.is_dir():
            raise ClientError(f"{out}: exists and is not a folder")
        t0 = time.monotonic()
        status_url, request = await self._kickoff(path, params, refs, post=post or bool(refs),
                                                  partial=partial, lenient=lenient)
        out.mkdir(parents=True, exist_ok=True)  # only now: a refused kick-off leaves no folder behind
        state = PullState(fhir_base=self.fhir_base, status_url=status_url, request=request)
        state.save(out)
        result = await self._pull(state, out, t0)
        result.since = since
        if since_state is not None and key is not None and result.transaction_time:
            since_state.set(key, result.transaction_time)
        return result

    @_unreachable_is_client_error
    async def resume(self, status_url: str, out_dir: str | os.PathLike) -> PullResult:
        """Continue an export by its status URL: files already verified in `out_dir` are kept,
        partial ones continue with Range, the rest are downloaded."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = PullState.load(out)
        if state is None or state.status_url != status_url:
            state = PullState(fhir_base=self.fhir_base, status_url=status_url)
        state.complete = state.deleted = False
        state.save(out)
        return await self._pull(state, out, time.monotonic())

    # --- kick-off -----------------------------------------------------------------------------

    async def _kickoff(self, path: str, params: list[tuple[str, str]], patients: list[str], *, post: bool,
                       partial: bool, lenient: bool) -> tuple[str, str]:
        url = self.fhir_base + path
        headers = {"Accept": FHIR_JSON, "Prefer": "respond-async" + (", handling=lenient" if lenient else "")}
        throttled = 0
        while True:
            sent = params + ([("allowPartialManifests", "true")] if partial else [])
            self.progress.kickoff(url)
            if post:
                parameters = {"resourceType": "Parameters", "parameter": [_parameter(n, v) for n, v in sent] + [
                    {"name": "patient", "valueReference": {"reference": p}} for p in patients]}
                request = url
                r = await self._send("POST", url, headers={**headers, "Content-Type": FHIR_JSON},
                                     data=json.dumps(parameters).encode())
            else:
                r = await self._send("GET", url, headers=headers, params=sent)
                request = str(r.url)
            async with r:
                body = await r.read()
                if r.status == 202:
                    where = r.headers.get("Content-Location")
                    if not where:
                        raise ClientError(f"kick-off {url}: 202 without a Content-Location header")
                    status_url = urljoin(url, where)
                    log.debug("export accepted: %s", status_url)
                    return status_url, request
                error = ServerError(f"kick-off {request}", r.status, body, r.content_type)
                if r.status == 429 and throttled < 3:
                    throttled += 1
                    await asyncio.sleep(retry_after(r.headers, default=5.0 * throttled))
                    continue
                if r.status == 400 and partial and "allowPartialManifests" in error.text:
                    partial = False  # a server that does not know the parameter: plain manifests
                    continue
                raise error

    # --- the pull -----------------------------------------------------------------------------

    async def _pull(self, state: PullState, out: Path, t0: float) -> PullResult:
        run = Pull(self, state, out)
        try:
            await run.run()
        finally:
            self.progress.close()
        last_byte = run.downloads.last_byte or time.monotonic()
        if self.delete and not state.deleted:
            state.deleted = await self._delete(state.status_url)
            state.save(out)
        files = [f for f in state.files if f.done]
        resources: dict[str, int] = {}
        for f in files:
            if f.kind == "output":
                resources[f.type or "?"] = resources.get(f.type or "?", 0) + (f.lines or 0)
        return PullResult(
            status_url=state.status_url, request=state.request, transaction_time=state.transaction_time,
            out_dir=str(out), manifest_path=str(out / "manifest.json"), files=files, resources=resources,
            errors=sum(f.lines or 0 for f in files if f.kind == "error"),
            ndjson_bytes=sum(f.ndjson_bytes or 0 for f in files), stored_bytes=sum(f.stored_bytes or 0 for f in files),
            wire_bytes=run.downloads.wire_bytes, seconds=last_byte - t0, total_seconds=time.monotonic() - t0,
            polls=run.polls, throttled=run.throttled, tokens=self.tokens_issued, deleted=state.deleted,
        )

    async def _delete(self, status_url: str) -> bool:
        try:
            async with await self._send("DELETE", status_url, headers={"Accept": FHIR_JSON}) as r:
                body = await r.read()
                if r.status < 300:
                    return True
                log.warning("DELETE %s: HTTP %d: %s", status_url, r.status, error_text(body, r.content_type))
        except NET_ERRORS as e:
            log.warning("DELETE %s failed: %s", status_url, e)
        return False


def _parameter(name: str, value: str) -> dict:
    kind = {"_since": "valueInstant", "_until": "valueInstant", "allowPartialManifests": "valueBoolean"}.get(
        name, "valueString")
    return {"name": name, kind: value == "true" if kind == "valueBoolean" else value}


def _oauth_token_uri(capability: dict) -> str | None:
    for rest in capability.get("rest") or []:
        for ext in (rest.get("security") or {}).get("extension") or []:
            for sub in ext.get("extension") or []:
                if sub.get("url") == "token":
                    return sub.get("valueUri")
    return None
