"""An organization's pages: onboarding, credentials, data, audit.

Every handler names the permission it needs and the organization of the URL;
`Ctx.require` checks both on the server (a person of another organization gets 403
by URL tampering), then the access library checks its own rules again. Objects in
the URL (credentials, jobs, onboarding requests) must belong to the URL's
organization, else 403 as well.
"""

from __future__ import annotations

import json

from aiohttp import web

from ..access.auditlog import search_audit
from ..access.onboarding import Onboarding
from ..access.orgs import PermissionDenied
from ..access.roles import ROLES
from ..errors import InputError
from .plot import export_plot
from .web import Ctx, audit_filters, people_names


def add_routes(app: web.Application) -> None:
    r = app.router
    o = "/org/{org}"
    r.add_get(o + "/", org_home)
    r.add_post(o + "/attest", attest)
    r.add_post(o + "/specialists", assign_specialist)
    r.add_get(o + "/credentials", credentials)
    r.add_post(o + "/credentials", create_credential)
    r.add_get(o + "/credentials/{cred}", credential)
    r.add_post(o + "/credentials/{cred}/rotate", rotate)
    r.add_post(o + "/credentials/{cred}/revoke", revoke)
    r.add_post(o + "/credentials/{cred}/ips", set_ips)
    r.add_post(o + "/credentials/{cred}/keys", add_keys)
    r.add_post(o + "/credentials/{cred}/jwks-url", set_jwks_url)
    r.add_get(o + "/onboarding", onboarding)
    r.add_post(o + "/onboarding", submit_onboarding)
    r.add_post(o + "/onboarding/{req}/release", release)
    r.add_get(o + "/data", data)
    r.add_get(o + "/jobs/{job}", job)
    r.add_get(o + "/jobs/{job}/files/{name}", download)
    r.add_get(o + "/audit", audit)


def _org(request: web.Request) -> str:
    return request.match_info["org"]


async def _org_ctx(request: web.Request, permission: str):
    ctx = Ctx(request)
    org_id = _org(request)
    await ctx.require(permission, org_id)
    org = await ctx.run(ctx.db.orgs.get, org_id)
    return ctx, org


def _lines(text: str) -> list[str]:
    return [x.strip() for x in text.replace(",", "\n").splitlines() if x.strip()]


def _page(ctx: Ctx, org, template: str, title: str, **extra) -> web.Response:
    nav = [("", "Home"), ("credentials", "Credentials"), ("data", "Data"), ("audit", "Audit")]
    if org.kind == "sponsor":
        nav.insert(2, ("onboarding", "Onboarding"))
    return ctx.render(template, {"title": title, "org": org, "nav": nav, "section": extra.pop("section", ""),
                                 "may": ctx.user.may, **extra})


# -- home ---------------------------------------------------------------------------------


async def org_home(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.read")
    onb = Onboarding(ctx.db)

    def gather():
        steps = onb.checklist(org.id, ctx.backend.has_completed_sandbox_job, ctx.now)
        attested = ctx.db.orgs.attested_contracts(org.id, ctx.now)
        contracts = ctx.db.orgs.contracts(org.id)
        people = ctx.state.users.list(org.id)
        return steps, attested, contracts, people

    steps, attested, contracts, people = await ctx.run(gather)
    return _page(ctx, org, "org_home.html", f"{org.name}", steps=steps, attested=attested, contracts=contracts,
                 people=people, roles=ROLES, section="")


async def attest(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "attest")
    form = await ctx.form()
    contract = form.get("contract") or None
    await ctx.run(ctx.db.orgs.attest, ctx.user.actor(), org.id, contract, ctx.now)
    ctx.flash("ok", f"Attested{' for contract ' + contract if contract else ''}.")
    raise ctx.redirect(f"org/{org.id}/")


async def assign_specialist(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "specialist.assign")
    form = await ctx.form()
    cu, password = await ctx.run(ctx.state.users.assign_specialist, ctx.user, org.id, form.get("email", ""),
                                 form.get("name", ""), ctx.now)
    return _page(ctx, org, "secret.html", "Specialist assigned", what=f"First password of {cu.email}",
                 secret=password, note="Give it to the specialist in person or by phone; they should change it "
                 "after signing in. It is not shown again.", back=f"org/{org.id}/")


# -- credentials ------------------------------------------------------------------------------


async def credentials(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.read")

    def gather():
        creds = ctx.db.credentials.list(ctx.user.actor(), org.id)
        return [(c, ctx.db.credentials.ips(c.id)) for c in creds]

    rows = await ctx.run(gather)
    return _page(ctx, org, "credentials.html", "Credentials", rows=rows, now=ctx.now, section="credentials",
                 max_ips=ctx.db.config.max_ips)


async def create_credential(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    form = await ctx.form()
    jwks = _jwks(form.get("jwks", ""))
    with_secret = form.get("auth", "secret") in ("secret", "both")
    if not with_secret and not jwks:
        raise InputError("public key: a key-only credential needs a pasted JWK or JWK Set "
                         "(a JWKS URL can be added too)")

    def make():
        with ctx.db.tx():
            cred, secret = ctx.db.credentials.issue(
                ctx.user.actor(), org.id, env="sandbox", label=form.get("label", "").strip(),
                secret=with_secret,
                jwks=jwks, ips=_lines(form.get("ips", "")), now=ctx.now)
            url = form.get("jwks_url", "").strip()
            if url:
                ctx.db.credentials.set_jwks_url(ctx.user.actor(), cred.id, url, ctx.now)
            return cred, secret

    cred, secret = await ctx.run(make)
    if secret is None:
        ctx.flash("ok", f"Credential {cred.client_id} created with public keys only.")
        raise ctx.redirect(f"org/{org.id}/credentials/{cred.id}")
    return _page(ctx, org, "secret.html", "New credential", what="Client secret", secret=secret,
                 client_id=cred.client_id, token_url=ctx.backend.fhir_base(request) + "/auth/token",
                 note="Copy it now: it is shown once and only its hash is kept. It expires in "
                      f"{ctx.db.config.secret_days} days.", back=f"org/{org.id}/credentials/{cred.id}",
                 section="credentials")


def _jwks(text: str) -> dict | None:
    text = text.strip()
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise InputError(f"public key: not JSON ({e})") from None
    if isinstance(doc, dict) and "keys" not in doc:
        doc = {"keys": [doc]}
    return doc


async def _cred(ctx: Ctx, org_id: str):
    cred = await ctx.run(ctx.db.credentials.get, ctx.request.match_info["cred"])
    if cred.org_id != org_id:
        await ctx.audit("console.credential", org_id, outcome="denied", credential=cred.id,
                        reason="credential of another organization")
        raise PermissionDenied(f"credential {cred.id} belongs to another organization")
    return cred


async def credential(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.read")
    cred = await _cred(ctx, org.id)

    def gather():
        return (ctx.db.credentials.ips(cred.id), ctx.db.credentials.keys(cred.id),
                ctx.db.audit.recent(cred.id, 20))

    ips, keys, entries = await ctx.run(gather)
    return _page(ctx, org, "credential.html", f"Credential {cred.label or cred.client_id}", cred=cred, ips=ips,
                 keys=keys, entries=entries, now=ctx.now, max_ips=ctx.db.config.max_ips, section="credentials")


async def rotate(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    cred = await _cred(ctx, org.id)
    secret = await ctx.run(ctx.db.credentials.rotate, ctx.user.actor(), cred.id, ctx.now)
    return _page(ctx, org, "secret.html", "Secret rotated", what="New client secret", secret=secret,
                 client_id=cred.client_id, token_url=ctx.backend.fhir_base(request) + "/auth/token",
                 note="The old secret no longer works. Copy the new one now: it is shown once.",
                 back=f"org/{org.id}/credentials/{cred.id}", section="credentials")


async def revoke(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    cred = await _cred(ctx, org.id)
    form = await ctx.form()
    await ctx.run(ctx.db.credentials.revoke, ctx.user.actor(), cred.id, ctx.now, form.get("reason", ""))
    ctx.flash("ok", f"Credential {cred.client_id} revoked: its tokens stop working now.")
    raise ctx.redirect(f"org/{org.id}/credentials/{cred.id}")


async def set_ips(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    cred = await _cred(ctx, org.id)
    form = await ctx.form()
    ips = await ctx.run(ctx.db.credentials.set_ips, ctx.user.actor(), cred.id, _lines(form.get("ips", "")), ctx.now)
    ctx.flash("ok", f"IP allowlist saved ({len(ips)} entries)." if ips else "IP allowlist cleared.")
    raise ctx.redirect(f"org/{org.id}/credentials/{cred.id}")


async def add_keys(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    cred = await _cred(ctx, org.id)
    form = await ctx.form()
    jwks = _jwks(form.get("jwks", ""))
    if jwks is None:
        raise InputError("public key: paste a JWK or a JWK Set")
    kids = await ctx.run(ctx.db.credentials.register_jwks, ctx.user.actor(), cred.id, jwks, ctx.now)
    ctx.flash("ok", f"Registered key {', '.join(kids)}.")
    raise ctx.redirect(f"org/{org.id}/credentials/{cred.id}")


async def set_jwks_url(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.manage")
    cred = await _cred(ctx, org.id)
    form = await ctx.form()
    url = form.get("jwks_url", "").strip() or None
    await ctx.run(ctx.db.credentials.set_jwks_url, ctx.user.actor(), cred.id, url, ctx.now)
    ctx.flash("ok", "JWKS URL saved." if url else "JWKS URL removed.")
    raise ctx.redirect(f"org/{org.id}/credentials/{cred.id}")


# -- onboarding (Part D) ------------------------------------------------------------------------


async def onboarding(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "credentials.read")
    onb = Onboarding(ctx.db)

    def gather():
        return (onb.for_org(org.id), onb.checklist(org.id, ctx.backend.has_completed_sandbox_job, ctx.now),
                [j.job for j in ctx.backend.jobs(org.id, 200) if j.job.status in ("done",) and j.job.env == "sandbox"],
                people_names(ctx.state.users))

    reqs, steps, done_jobs, who = await ctx.run(gather)
    return _page(ctx, org, "onboarding.html", "Production onboarding", reqs=reqs, steps=steps, done_jobs=done_jobs,
                 max_ips=ctx.db.config.max_ips, section="onboarding", who=who)


async def submit_onboarding(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "onboarding.submit")
    form = await ctx.form()
    await ctx.run(Onboarding(ctx.db).submit, ctx.user.actor(), org.id, form.get("job_id", ""),
                  _lines(form.get("ips", "")), ctx.backend.job_completed, ctx.now)
    ctx.flash("ok", "Submitted: the operator reviews the sandbox job and the IP addresses.")
    raise ctx.redirect(f"org/{org.id}/onboarding")


async def release(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "production.release")
    onb = Onboarding(ctx.db)
    req = await ctx.run(onb.get, int(request.match_info["req"]) if request.match_info["req"].isdigit() else -1)
    if req.org_id != org.id:
        raise PermissionDenied(f"onboarding request {req.id} belongs to another organization")
    cred, secret = await ctx.run(onb.release, ctx.user.actor(), req.id, ctx.now)
    return _page(ctx, org, "secret.html", "Production credential", what="Production client secret", secret=secret,
                 client_id=cred.client_id, token_url=ctx.backend.fhir_base(request) + "/auth/token",
                 note="Hand the client id and this secret to your Data Operations Specialist. It is shown once; "
                      "the credential works only from the approved IP addresses.",
                 back=f"org/{org.id}/credentials/{cred.id}", section="onboarding")


# -- data -------------------------------------------------------------------------------------


async def data(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "data.read")

    def gather():
        return ctx.backend.jobs(org.id, 200), ctx.backend.attribution(org.id)

    jobs, attribution = await ctx.run(gather)
    points = [(j.job.created, j.bytes, j.seconds) for j in jobs if j.job.status in ("done", "expired")]
    live = any(j.job.active for j in jobs)
    return _page(ctx, org, "data.html", "Data", jobs=jobs, attribution=attribution, plot=export_plot(points),
                 live=live, section="data")


async def _job(ctx: Ctx, org_id: str):
    job_id = ctx.request.match_info["job"]
    found = await ctx.run(ctx.backend.job, job_id)
    if found is None or found.status == "cancelled":
        raise web.HTTPNotFound(reason=f"job {job_id[:64]} does not exist")
    if found.org_id != org_id:
        await ctx.audit("console.job", org_id, outcome="denied", job=job_id, reason="job of another organization")
        raise PermissionDenied(f"job {job_id} belongs to another organization")
    return found


async def job(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "data.read")
    found = await _job(ctx, org.id)
    files = await ctx.run(ctx.backend.files, found.id)
    api_urls = {f.name: ctx.backend.job_url(request, found.id, f.name) for f in files}
    return _page(ctx, org, "job.html", f"Job {found.id[:12]}", job=found, files=files, api_urls=api_urls,
                 rules=json.loads(found.rules or "[]"), section="data")


async def download(request: web.Request) -> web.StreamResponse:
    ctx, org = await _org_ctx(request, "data.read")
    found = await _job(ctx, org.id)
    if found.status == "expired" or (found.expires is not None and found.expires <= ctx.now):
        raise web.HTTPGone(reason=f"the files of job {found.id} expired")
    name = request.match_info["name"]
    path = await ctx.run(ctx.backend.file_path, found.id, name)  # from the job's file row, never the URL
    if path is None:
        raise web.HTTPNotFound(reason="no such file in this job")
    await ctx.audit("console.download", org.id, job=found.id, file=name)
    return web.FileResponse(path, headers={
        "Content-Disposition": f'attachment; filename="{path.name}"', "Content-Type": "application/octet-stream"})


# -- audit ------------------------------------------------------------------------------------


async def audit(request: web.Request) -> web.Response:
    ctx, org = await _org_ctx(request, "audit.read")
    q = request.query
    filters = audit_filters(q)
    entries = await ctx.run(lambda: search_audit(ctx.db, org_id=org.id, limit=300, **filters))
    return _page(ctx, org, "audit.html", "Audit trail", entries=entries, filters=filters, section="audit",
                 action_url=f"org/{org.id}/audit")
