"""Sign-in (password, then TOTP when enabled), sign-out and the person's own account."""

from __future__ import annotations

import functools

import pyotp
from aiohttp import web

from ..access.users import SignInError
from ..errors import InputError
from .web import COOKIE, SESSION, Ctx, clear_session_cookie, render, set_session_cookie


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", home)
    r.add_get("/sign-in", sign_in_form)
    r.add_post("/sign-in", sign_in)
    r.add_get("/sign-in/totp", totp_form)
    r.add_post("/sign-in/totp", totp)
    r.add_post("/sign-out", sign_out)
    r.add_get("/account", account)
    r.add_post("/account/password", change_password)
    r.add_post("/account/totp", enable_totp)


async def home(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    raise ctx.redirect("ops/" if ctx.user.is_operator else f"org/{ctx.user.org_id}/")


async def sign_in_form(request: web.Request) -> web.Response:
    if request.get(SESSION) is not None:
        raise Ctx(request).redirect("")
    return render(request, "sign_in.html", {"title": "Sign in", "email": "", "error": None})


async def sign_in(request: web.Request) -> web.StreamResponse:
    ctx = Ctx(request)
    form = await ctx.form()
    email = form.get("email", "")
    try:
        cu = await ctx.run(ctx.state.users.sign_in, email, form.get("password", ""), ctx.ip, ctx.now)
    except SignInError as e:
        resp = render(request, "sign_in.html", {"title": "Sign in", "email": email, "error": str(e)}, status=e.status)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    token = await ctx.run(ctx.state.sessions.start, cu, ctx.ip, ctx.now)
    resp = web.HTTPSeeOther(ctx.url("sign-in/totp" if cu.has_totp else ""))
    set_session_cookie(request, resp, token)
    raise resp


async def totp_form(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    if ctx.session is None or ctx.session.complete:
        raise ctx.redirect("")
    return render(request, "totp.html", {"title": "Authentication code", "error": None})


async def totp(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    if ctx.session is None or ctx.session.complete:
        raise ctx.redirect("")
    form = await ctx.form()
    try:
        await ctx.run(ctx.state.users.check_totp, ctx.session.user, form.get("code", ""), ctx.ip, ctx.now)
    except SignInError as e:
        return render(request, "totp.html", {"title": "Authentication code", "error": str(e)}, status=e.status)
    await ctx.run(ctx.state.sessions.second_factor_passed, request.cookies.get(COOKIE, ""))
    raise ctx.redirect("")


async def sign_out(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    assert ctx.session is not None  # the session middleware lets no one here without one
    token = request.cookies.get(COOKIE, "")
    await ctx.audit("console.sign_out", ctx.user.org_id)
    await ctx.run(ctx.state.sessions.end, token)
    ctx.state.flash.pop(ctx.session.token_hash, None)
    resp = web.HTTPSeeOther(ctx.url("sign-in"))
    clear_session_cookie(request, resp)
    raise resp


async def account(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    secret = None if ctx.user.has_totp else ctx.state.users.new_totp_secret()
    uri = pyotp.TOTP(secret).provisioning_uri(name=ctx.user.email, issuer_name="fhirhose") if secret else None
    return ctx.render("account.html", {"title": "Your account", "totp_secret": secret, "totp_uri": uri})


async def change_password(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    form = await ctx.form()
    if form.get("new", "") != form.get("repeat", ""):
        raise InputError("new password: the two entries differ")
    assert ctx.session is not None
    await ctx.run(functools.partial(ctx.state.users.change_password, ctx.user, form.get("current", ""),
                                    form.get("new", ""), ctx.now, keep_session=ctx.session.token_hash))
    ctx.flash("ok", "Password changed.")
    raise ctx.redirect("account")


async def enable_totp(request: web.Request) -> web.Response:
    ctx = Ctx(request)
    form = await ctx.form()
    await ctx.run(ctx.state.users.enable_totp, ctx.user, form.get("secret", ""), form.get("code", ""), ctx.now)
    await ctx.run(ctx.state.sessions.second_factor_passed, request.cookies.get(COOKIE, ""))
    ctx.flash("ok", "Two-step sign-in is on: you will be asked for a code after your password.")
    raise ctx.redirect("account")


__all__ = ["add_routes"]
