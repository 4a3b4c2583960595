"""A full disk (issue 10): token, kick-off and DELETE answer 503 + Retry-After (never a
bare 500); finished files are still served, their audit entries kept until the disk has
room again; a refused kick-off leaves no job folder behind.

Two ways to fill the disk: a real 4 MB tmpfs filled to the last block (needs root and
mount permission; skipped otherwise), and ENOSPC raised where the server writes (runs
everywhere)."""

import contextlib
import errno
import gzip
import os
import sqlite3
import subprocess

import pytest

from fhirhose.access.db import Audit
from fhirhose.server.app import API
from fhirhose.server.db import JobDB

from .support.server import async_test, running
from .test_server_api import expect_outcome


@contextlib.contextmanager
def small_disk(path, size="4m"):
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True,
                          check=False)
    if done.returncode:
        pytest.skip(f"mount not permitted: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(disk) -> None:
    """Empty the databases' write-ahead logs into their files, then take every free block."""
    for name in ("access.sqlite", "jobs.sqlite"):
        conn = sqlite3.connect(disk / name)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    with open(disk / "filler", "wb", buffering=0) as f, pytest.raises(OSError) as e:
        while True:
            f.write(b"\0" * 4096)
    assert e.value.errno == errno.ENOSPC


async def finished_job(h):
    r = await h.kickoff("small-aco", params={"_type": "Patient"})
    assert r.status == 202, await r.text()
    status_url = r.headers["Content-Location"]
    manifest = await (await h.wait("small-aco", status_url)).json()
    return status_url, manifest["output"][0]["url"]


async def token_answer(h, name="small-aco"):
    async with h.session.post(f"{h.base}/auth/token", data={"grant_type": "client_credentials"},
                              headers=h.basic(name)) as r:
        return r.status, r.headers.get("Retry-After"), await r.json()


async def audit_actions(h) -> list[str]:
    return [e.action for e in h.app[API].access.audit.all(200)]


async def check_full_disk(h, jobs_dir, status_url, file_url, *, ready) -> None:
    """The answers while the disk is full, then the audit catch-up once `ready()` frees it."""
    downloads_before = (await audit_actions(h)).count("export.download")
    status, retry, body = await token_answer(h)
    assert status == 503 and retry and body["error"] == "temporarily_unavailable", body
    before = sorted(p.name for p in jobs_dir.iterdir())
    r = await h.kickoff("big-aco")
    assert "disk is full" in await expect_outcome(r, 503) and r.headers["Retry-After"]
    assert sorted(p.name for p in jobs_dir.iterdir()) == before  # no folder without its row
    r = await h.session.delete(status_url, headers=await h.headers("small-aco"))
    await expect_outcome(r, 503)
    # The finished file is served; its audit entry waits in memory.
    r = await h.fetch("small-aco", file_url, **{"Accept-Encoding": "gzip"})
    assert r.status == 200 and gzip.decompress(await r.read()).count(b"\n") == 30
    assert len(h.app[API].pending_audit) == 1
    ready()
    r = await h.fetch("small-aco", file_url, **{"Accept-Encoding": "gzip"})
    assert r.status == 200
    assert not h.app[API].pending_audit
    assert (await audit_actions(h)).count("export.download") == downloads_before + 2
    # And everything works again.
    assert (await token_answer(h))[0] == 200
    r = await h.session.delete(status_url, headers=await h.headers("small-aco"))
    assert r.status == 202


@async_test
async def test_full_tmpfs(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        async with running(disk) as h:
            status_url, file_url = await finished_job(h)
            await h.token("big-aco")
            fill(disk)
            await check_full_disk(h, disk / "jobs", status_url, file_url,
                                  ready=lambda: (disk / "filler").unlink())


@async_test
async def test_injected_enospc(tmp_path, monkeypatch):
    full = {"on": False}

    def failing(real):
        def write(*args, **kwargs):
            if full["on"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)
        return write

    monkeypatch.setattr(Audit, "record", failing(Audit.record))
    monkeypatch.setattr(JobDB, "insert_unless_active", staticmethod(failing(JobDB.insert_unless_active)))
    monkeypatch.setattr(JobDB, "set_status", staticmethod(failing(JobDB.set_status)))
    async with running(tmp_path) as h:
        status_url, file_url = await finished_job(h)
        await h.token("big-aco")
        full["on"] = True
        await check_full_disk(h, tmp_path / "jobs", status_url, file_url, ready=lambda: full.update(on=False))
