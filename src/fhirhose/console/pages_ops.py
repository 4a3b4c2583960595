"""The operator's pages: service health, organizations, people and roles, the onboarding
queue, every job, the global audit search. Each handler checks an operator permission
on the server; the library actions run as `Actor.system("console:<email>")`."""

from __future__ import annotations

from aiohttp import web

from ..access.auditlog import search_audit
from ..access.onboarding import Onboarding
from ..access.roles import PERMISSIONS, ROLES
from ..errors import InputError
from .web import Ctx, audit_filters, people_names


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/ops/", health)
    r.add_get("/ops/orgs", orgs)
    r.add_post("/ops/orgs", create_org)
    r.add_post("/ops/orgs/{org}/contracts", add_contract)
    r.add_post("/ops/orgs/{org}/active", set_active)
    r.add_get("/ops/users", users)
    r.add_post("/ops/users", create_user)
    r.add_post("/ops/users/{id}/reset", reset_password)
    r.add_post("/ops/users/{id}/role", change_role)
    r.add_post("/ops/users/{id}/totp-reset", reset_totp)
    r.add_post("/ops/users/{id}/deactivate", deactivate)
    r.add_get("/ops/onboarding", queue)
    r.add_post("/ops/onboarding/{id}/approve", approve)
    r.add_post("/ops/onboarding/{id}/reject", reject)
    r.add_get("/ops/jobs", jobs)
    r.add_get("/ops/audit", audit)


NAV = [("ops/", "Health"), ("ops/orgs", "Organizations"), ("ops/users", "People"),
       ("ops/onboarding", "Approvals"), ("ops/jobs", "Jobs"), ("ops/audit", "Audit")]


async def _ops(request: web.Request, permission: str) -> Ctx:
    ctx = Ctx(request)
    await ctx.require(permission, None)
    return ctx


def _page(ctx: Ctx, template: str, title: str, section: str, **extra) -> web.Response:
    return ctx.render(template, {"title": title, "ops_nav": NAV, "section": section, **extra})


def _int(text: str, name: str) -> int:
    if not text.isdigit():
        raise InputError(f"{name}: not a number")
    return int(text)


async def health(request: web.Request) -> web.Response:
    ctx = await _ops(request, "service.read")

    def gather():
        b = ctx.backend
        return {"active_jobs": b.active_jobs(), "queued_chunks": b.queued_chunks(), "workers": b.workers,
                "pending_onboarding": len(Onboarding(ctx.db).pending()), "orgs": len(ctx.db.orgs.list()),
                "denied_24h": ctx.db.conn.execute("SELECT COUNT(*) FROM audit WHERE outcome='denied' AND at > ?",
                                                  (ctx.now - 86400,)).fetchone()[0]}

    return _page(ctx, "ops_health.html", "Service health", "ops/", stats=await ctx.run(gather))


async def orgs(request: web.Request) -> web.Response:
    ctx = await _ops(request, "orgs.manage")

    def gather():
        out = []
        for o in ctx.db.orgs.list():
            windows = ctx.db.conn.execute(
                "SELECT a.contract_id, a.attested_at, a.ended_at, u.name FROM attestations a JOIN users u"
                " ON u.id = a.user_id WHERE a.org_id = ? ORDER BY a.attested_at", (o.id,)).fetchall()
            out.append((o, ctx.db.orgs.contracts(o.id), windows))
        return out

    return _page(ctx, "ops_orgs.html", "Organizations", "ops/orgs", rows=await ctx.run(gather),
                 kinds=ctx.db.config.kinds)


async def create_org(request: web.Request) -> web.Response:
    ctx = await _ops(request, "orgs.manage")
    f = await ctx.form()
    org = await ctx.run(ctx.db.orgs.create, ctx.user.actor(), f.get("id", "").strip(), f.get("kind", ""),
                        f.get("name", ""), ctx.now)
    ctx.flash("ok", f"Organization {org.id} created.")
    raise ctx.redirect("ops/orgs")


async def add_contract(request: web.Request) -> web.Response:
    ctx = await _ops(request, "orgs.manage")
    f = await ctx.form()
    org_id = request.match_info["org"]
    await ctx.run(ctx.db.orgs.add_contract, ctx.user.actor(), org_id, f.get("contract", "").strip().upper(), ctx.now)
    ctx.flash("ok", f"Contract added to {org_id}.")
    raise ctx.redirect("ops/orgs")


async def set_active(request: web.Request) -> web.Response:
    ctx = await _ops(request, "orgs.manage")
    f = await ctx.form()
    org_id = request.match_info["org"]
    active = f.get("active") == "1"
    await ctx.run(ctx.db.orgs.set_active, ctx.user.actor(), org_id, active, ctx.now)
    ctx.flash("ok", f"{org_id} {'reinstated' if active else 'suspended'}.")
    raise ctx.redirect("ops/orgs")


async def users(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")

    def gather():
        return ctx.state.users.list(), ctx.db.orgs.list()

    people, orgs_ = await ctx.run(gather)
    kinds = {o.id: o.kind for o in orgs_}
    return _page(ctx, "ops_users.html", "People and roles", "ops/users", people=people, orgs=orgs_, roles=ROLES,
                 permissions=PERMISSIONS, kinds=kinds)


async def create_user(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")
    f = await ctx.form()
    cu, password = await ctx.run(ctx.state.users.create, ctx.user.actor(), f.get("email", ""), f.get("name", ""),
                                 f.get("role", ""), f.get("org") or None, title=f.get("title", ""), now=ctx.now)
    return _page(ctx, "secret.html", "Person added", "ops/users", what=f"First password of {cu.email}",
                 secret=password, note="Hand it over in person or by phone; it is not shown again.", back="ops/users")


async def reset_password(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")
    cu_id = _int(request.match_info["id"], "user")
    password = await ctx.run(ctx.state.users.reset_password, ctx.user.actor(), cu_id, ctx.now)
    cu = await ctx.run(ctx.state.users.get, cu_id)
    return _page(ctx, "secret.html", "Password reset", "ops/users", what=f"New password of {cu.email}",
                 secret=password, note="Their sessions ended. Hand the password over after checking who asks.",
                 back="ops/users")


async def change_role(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")
    cu_id = _int(request.match_info["id"], "user")
    f = await ctx.form()
    cu = await ctx.run(ctx.state.users.change_role, ctx.user.actor(), cu_id, f.get("role", ""),
                       title=f.get("title", ""), now=ctx.now)
    ctx.flash("ok", f"{cu.email} is now {cu.role_title}; their sessions ended.")
    raise ctx.redirect("ops/users")


async def reset_totp(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")
    cu_id = _int(request.match_info["id"], "user")
    await ctx.run(ctx.state.users.reset_totp, ctx.user.actor(), cu_id, ctx.now)
    ctx.flash("ok", "Two-step sign-in turned off; the person signs in with their password and may turn it on again.")
    raise ctx.redirect("ops/users")


async def deactivate(request: web.Request) -> web.Response:
    ctx = await _ops(request, "users.manage")
    cu_id = _int(request.match_info["id"], "user")
    await ctx.run(ctx.state.users.deactivate, ctx.user.actor(), cu_id, ctx.now)
    ctx.flash("ok", "Person removed: sessions ended, attestations ended.")
    raise ctx.redirect("ops/users")


async def queue(request: web.Request) -> web.Response:
    ctx = await _ops(request, "onboarding.approve")

    def gather():
        onb = Onboarding(ctx.db)
        recent = ctx.db.conn.execute("SELECT id FROM onboarding WHERE status != 'pending' ORDER BY id DESC LIMIT 20")
        return onb.pending(), [onb.get(r[0]) for r in recent.fetchall()], people_names(ctx.state.users)

    pending, done, who = await ctx.run(gather)
    return _page(ctx, "ops_onboarding.html", "Onboarding approvals", "ops/onboarding", pending=pending, done=done,
                 who=who)


async def approve(request: web.Request) -> web.Response:
    ctx = await _ops(request, "onboarding.approve")
    req_id = _int(request.match_info["id"], "request")
    await ctx.run(Onboarding(ctx.db).approve, ctx.user.actor(), req_id, ctx.backend.job_completed, ctx.now)
    ctx.flash("ok", f"Request {req_id} approved: an Attestor can now release the production credential.")
    raise ctx.redirect("ops/onboarding")


async def reject(request: web.Request) -> web.Response:
    ctx = await _ops(request, "onboarding.approve")
    req_id = _int(request.match_info["id"], "request")
    f = await ctx.form()
    await ctx.run(Onboarding(ctx.db).reject, ctx.user.actor(), req_id, f.get("note", ""), ctx.now)
    ctx.flash("ok", f"Request {req_id} rejected.")
    raise ctx.redirect("ops/onboarding")


async def jobs(request: web.Request) -> web.Response:
    ctx = await _ops(request, "service.read")
    rows = await ctx.run(ctx.backend.jobs, None, 300)
    return _page(ctx, "ops_jobs.html", "All jobs", "ops/jobs", jobs=rows)


async def audit(request: web.Request) -> web.Response:
    ctx = await _ops(request, "audit.all")
    q = request.query
    org = q.get("org", "")[:32]
    filters = audit_filters(q)
    entries = await ctx.run(lambda: search_audit(ctx.db, org_id=org or None, limit=300, **filters))
    return _page(ctx, "audit.html", "Audit search", "ops/audit", entries=entries, filters=filters, org_filter=org,
                 action_url="ops/audit")
