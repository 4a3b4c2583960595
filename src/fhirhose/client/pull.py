"""One pull after its kick-off: the status poller, manifest pages, the download workers.

The poller reads the status URL until the export is complete, honouring `Retry-After`
(also on 429) and retrying transient failures. Every manifest it sees — partial ones
included, and every page its `next` links lead to — adds the files not yet known to
the download queue, so downloads start while the export still runs. When the export
is complete and every file verified, the local `manifest.json` is written.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from ..errors import ClientError
from ._http import NET_ERRORS, ServerError, read_json, retry_after
from .download import Downloads
from .manifest import KINDS, integrity, local_manifest, local_name, write_manifest
from .state import FileState, PullState

if TYPE_CHECKING:
    from .client import BulkClient

__all__ = ["Pull"]


class Pull:
    """The moving parts of one pull: the status poller feeding the download workers' queue."""

    def __init__(self, client: BulkClient, state: PullState, out: Path):
        self.c = client
        self.state = state
        self.out = out
        self.downloads = Downloads(client, state, out)
        self.known = {f.url: f for f in state.files}
        self.names = {f.name for f in state.files}
        self.links: dict[str, str] = {}
        self.manifest: dict = state.manifest or {}
        self.polls = self.throttled = 0

    async def run(self) -> None:
        """Poll until the export is complete and every file is in; then write the local manifest.
        The state file is saved whatever happens, so a failed pull can be resumed."""
        self.c.progress.accepted(self.state.status_url)
        for f in self.state.files:
            self.c.progress.listed(f)
            if not f.done:
                self.downloads.queue.put_nowait(f)
        try:
            async with asyncio.TaskGroup() as tg:
                workers = [tg.create_task(self.downloads.worker()) for _ in range(self.c.concurrency)]
                await self._poll()
                for _ in workers:
                    self.downloads.queue.put_nowait(None)
        except BaseExceptionGroup as eg:
            raise _first(eg) from None
        finally:
            self.state.save(self.out)
        self.state.manifest = self.manifest
        self.state.complete = True
        write_manifest(self.out / "manifest.json", local_manifest(self.manifest, self.state))
        self.state.save(self.out)

    # --- status and manifests -------------------------------------------------------------------

    async def _poll(self) -> None:
        url, backoff, failures = self.state.status_url, 1.0, 0
        while True:
            try:
                r = await self.c._send("GET", url, headers={"Accept": "application/json"})
                async with r:
                    self.polls += 1
                    progress = r.headers.get("X-Progress")
                    self.c.progress.polled(r.status, progress)
                    if r.status == 429:
                        self.throttled += 1
                        await r.read()
                        await asyncio.sleep(retry_after(r.headers, default=backoff))
                        continue
                    if r.status in (200, 202):
                        doc = await read_json(r, f"export status {url}")
                        wait = retry_after(r.headers, default=backoff)
                    else:
                        error = ServerError(f"export status {url}", r.status, await r.read(), r.content_type)
                        if r.status < 500 or "[transient]" not in error.text or failures >= 5:
                            raise error
                        failures += 1
                        await asyncio.sleep(retry_after(r.headers, default=backoff))
                        continue
            except NET_ERRORS as e:
                failures += 1
                if failures > 5:
                    raise ClientError(f"export status {url}: {type(e).__name__}: {e}") from None
                await asyncio.sleep(backoff)
                continue
            failures = 0
            if doc is not None:
                await self._walk(doc, url)
            if r.status == 200:
                if doc is None:
                    raise ClientError(f"export status {url}: complete, but without a manifest")
                return
            backoff = min(backoff * 1.5, 60.0)
            await asyncio.sleep(wait)

    async def _walk(self, doc: dict, url: str) -> None:
        """Take the files of a manifest page and of every page its `next` links lead to now.
        Pages are immutable once served except for a `next` link added later, so pages
        already read are skipped by following the links remembered for them."""
        while True:
            self._take(doc)
            nxt = next((lk.get("url") for lk in doc.get("link") or [] if lk.get("relation") == "next"), None)
            if nxt is None:
                return
            nxt = urljoin(url, nxt)
            self.links[url] = nxt
            while nxt in self.links:
                nxt = self.links[nxt]
            url = nxt
            r = await self.c._send("GET", url, headers={"Accept": "application/json"})
            async with r:
                if r.status not in (200, 202):
                    raise ServerError(f"manifest page {url}", r.status, await r.read(), r.content_type)
                doc = await read_json(r, f"manifest page {url}") or {}

    def _take(self, doc: dict) -> None:
        if not self.manifest:
            self.manifest = {k: v for k, v in doc.items() if k not in (*KINDS, "link")}
            self.manifest.update({k: [] for k in KINDS})
            self.state.transaction_time = doc.get("transactionTime")
            self.state.request = self.state.request or doc.get("request")
        self.downloads.requires_token = bool(self.manifest.get("requiresAccessToken", True))
        added = False
        for kind in KINDS:
            for item in doc.get(kind) or []:
                if not isinstance(item, dict) or not item.get("url"):
                    continue
                url = urljoin(self.state.status_url, item["url"])
                if url in self.known:
                    continue
                rtype = item.get("type")
                f = FileState(url=url, kind=kind, type=rtype, name=local_name(url, rtype, self.names),
                              count=item.get("count"), **integrity(item))
                self.known[url] = f
                self.state.files.append(f)
                self.manifest[kind].append(item)
                self.c.progress.listed(f)
                self.downloads.queue.put_nowait(f)
                added = True
        if added:
            self.state.manifest = self.manifest
            self.state.save(self.out)


def _first(eg: BaseExceptionGroup) -> BaseException:
    """The first real error of a task group (cancellations of the others are noise)."""
    for e in eg.exceptions:
        if isinstance(e, BaseExceptionGroup):
            return _first(e)
        if not isinstance(e, asyncio.CancelledError):
            return e
    return eg.exceptions[0]
