"""Operations endpoints of every node: `/healthz` (the process answers), `/readyz` (its
database answers) and `/metrics` (Prometheus text format), plus the middleware that
measures request latency and counts token and authentication failures."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .db import JobDB
from .state import API, ServerState

__all__ = ["add_routes", "metrics_middleware", "Metrics", "METRICS"]


class _StateCollector:
    """Reads the job DB and this node's runner when scraped (the DB part is fetched first)."""

    def __init__(self, st: ServerState):
        self.st = st
        self.snapshot: tuple[dict, dict] = ({}, {})

    def collect(self):
        jobs, queue = self.snapshot
        g = GaugeMetricFamily("fhirhose_jobs", "jobs by state (all nodes)", labels=["state"])
        for state, n in sorted(jobs.items()):
            g.add_metric([state], n)
        yield g
        yield GaugeMetricFamily("fhirhose_queue_depth", "pending chunks of active jobs (all nodes)",
                                value=queue.get("pending", 0))
        yield GaugeMetricFamily("fhirhose_queue_running", "chunks claimed and running (all nodes)",
                                value=queue.get("running", 0))
        yield GaugeMetricFamily("fhirhose_queue_oldest_seconds", "age of the oldest job with pending chunks",
                                value=queue.get("oldest_age", 0.0))
        s = self.st.runner.stats
        for name, value, doc in (("claimed", s.claimed, "chunks this node claimed"),
                                 ("redone", s.redone, "claims of a chunk attempted before (retry or dead node)"),
                                 ("done", s.done, "chunks this node committed"),
                                 ("lost", s.lost, "chunks whose lease ran out before their commit")):
            yield CounterMetricFamily(f"fhirhose_chunks_{name}", doc, value=value)
        r = CounterMetricFamily("fhirhose_resources_written", "resources written by this node", labels=["type"])
        for rtype, n in sorted(s.resources.items()):
            r.add_metric([rtype], n)
        yield r
        yield CounterMetricFamily("fhirhose_bytes_written", "stored (compressed) bytes written by this node",
                                  value=s.bytes_written)


class Metrics:
    """One registry per app (several apps may live in one process)."""

    def __init__(self, st: ServerState):
        self.registry = CollectorRegistry()
        self.state = _StateCollector(st)
        self.registry.register(self.state)
        self.latency = Histogram("fhirhose_request_seconds", "request latency", ["route", "method"],
                                 registry=self.registry)
        self.auth_failures = Counter("fhirhose_auth_failures", "401/403 answers", ["endpoint", "status"],
                                     registry=self.registry)


METRICS = web.AppKey("fhirhose_metrics", Metrics)


@web.middleware
async def metrics_middleware(request: web.Request, handler):
    m = request.app.get(METRICS)
    if m is None:
        return await handler(request)
    t0 = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        route = request.match_info.route.name or (request.match_info.route.resource.canonical
                                                  if request.match_info.route.resource else "unmatched")
        m.latency.labels(route, request.method).observe(time.perf_counter() - t0)
        if status in (401, 403):
            m.auth_failures.labels("token" if request.path.endswith("/auth/token") else "api", str(status)).inc()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    st = request.app[API]
    ok = await asyncio.to_thread(st.sql.ping)
    return web.json_response({"status": "ok" if ok else "database unreachable", "engine": st.sql.engine},
                             status=200 if ok else 503)


async def metrics(request: web.Request) -> web.Response:
    st, m = request.app[API], request.app[METRICS]
    jobs = await st.db.call(JobDB.jobs_by_status)
    queue = await st.db.call(JobDB.queue_stats, time.time())
    m.state.snapshot = (jobs, queue)
    body = await asyncio.to_thread(generate_latest, m.registry)
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def add_routes(app: web.Application, st: ServerState) -> None:
    """`/healthz`, `/readyz` and `/metrics` at the root of `app` (not under the FHIR base)."""
    app[METRICS] = Metrics(st)
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
