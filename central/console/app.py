"""The ops console: FastAPI with server-side Jinja2 templates and one small stylesheet.

Reads the CDP store and the fleet's retained topics; writes only through ``central.push`` (the
CLI's signed path). Every page but ``/healthz``, ``/login`` and the stylesheet needs a session;
every POST carries the session's CSRF token; operator actions need the operator role and are
recorded in the audit log with the user, whether they worked or not.
"""

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from central import push
from central.cdp_sink import CdpSink
from central.console import campaigns as campaigns_view
from central.console import fleet as fleet_view
from central.console.accounts import Accounts, User
from central.console.charts import bar_chart
from central.console.config import OpsConfig
from central.console.kpis import (
    ExperienceKpi,
    csv_text,
    daily_series,
    experience_csv,
    experience_rows,
    kpi_rows,
)
from central.console.security import LoginLimiter, csrf_ok, csrf_token, sign_sid, unsign_sid
from central.console.signer import Signer
from central.fleet_status import FleetWatcher
from contracts.uplift import Uplift
from contracts.validation import ID_PATTERN

HERE = Path(__file__).resolve().parent
COOKIE = "ops_session"
MAX_FORM_BYTES = 16_384
# A bundle urlencoded is up to 3x its bytes.
MAX_BUNDLE_FORM_BYTES = 3 * campaigns_view.MAX_BUNDLE_BYTES + MAX_FORM_BYTES
_ID = re.compile(ID_PATTERN)
EMERGENCY_ACTIONS = ("emergency", "clear emergency")
# How long the store page reloads itself waiting for a screenshot the box has not sent yet.
SCREENSHOT_WAIT_S = 30.0

# No script, no inline style, no framing: the console works without any JavaScript, so the
# policy can forbid it outright (an injected <script> would not run).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
        " frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class Console:
    config: OpsConfig
    accounts: Accounts
    secret: bytes
    sink: CdpSink | None
    watcher: FleetWatcher | None
    limiter: LoginLimiter = field(default_factory=LoginLimiter)
    demo_note: str = ""
    previewer: campaigns_view.Previewer | None = None
    pushed: campaigns_view.PushedBundles | None = None
    # When a screenshot was asked per (store, screen): the page waits for the answer.
    shot_requests: dict[tuple[str, str], float] = field(default_factory=dict)
    signer: Signer | None = None

    def __post_init__(self) -> None:
        state = self.config.console.state_dir
        if self.previewer is None:
            self.previewer = campaigns_view.Previewer(
                state / "previews", content_dir=self.config.console.content_dir
            )
        if self.pushed is None:
            self.pushed = campaigns_view.PushedBundles(state / "campaigns")
        if self.signer is None:
            s = self.config.signing
            self.signer = Signer(s.key, s.unlock_minutes * 60.0)


@dataclass
class Ctx:
    """Who is asking: their session id (None before any), their user (None before login)."""

    sid: str | None
    user: User | None
    client: str


class LoginRequired(Exception):
    pass


class Refused(Exception):
    """A request refused with a page saying why (and nothing changed)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


def create_app(console: Console) -> FastAPI:
    app = FastAPI(title="edge-ops console", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.console = console
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals["points_class"] = _points_class
    templates.env.filters["utc"] = lambda t: datetime.fromtimestamp(t, UTC).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    secure = console.config.console.secure_cookies

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    def ctx(request: Request) -> Ctx:
        client = request.client.host if request.client else "?"
        sid = unsign_sid(console.secret, request.cookies.get(COOKIE))
        if sid is None:
            return Ctx(None, None, client)
        known, user = console.accounts.session(sid)
        return Ctx(sid if known else None, user, client)

    def login_required(c: Annotated[Ctx, Depends(ctx)]) -> Ctx:
        if c.user is None:
            raise LoginRequired()
        return c

    def signing_key() -> Path | Ed25519PrivateKey:
        """Called inside each push's ``try``: a locked key is that push's PushError."""
        assert console.signer is not None
        return console.signer.key()

    CtxDep = Annotated[Ctx, Depends(ctx)]
    LoggedIn = Annotated[Ctx, Depends(login_required)]

    async def read_form(request: Request, limit: int) -> dict[str, str]:
        body = await request.body()
        if len(body) > limit:
            raise Refused(413, "Form too large", "That form was larger than the console takes.")
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=40)
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "Unreadable form", "The form could not be read.") from None
        return {k: v[0] for k, v in parsed.items()}

    async def form(request: Request) -> dict[str, str]:
        """The urlencoded form, size-capped, first value of each field."""
        return await read_form(request, MAX_FORM_BYTES)

    async def bundle_form(request: Request) -> dict[str, str]:
        """A form carrying a campaign bundle: the bundle's cap, plus the form's own fields."""
        return await read_form(request, MAX_BUNDLE_FORM_BYTES)

    FormDep = Annotated[dict[str, str], Depends(form)]
    BundleFormDep = Annotated[dict[str, str], Depends(bundle_form)]

    def csrf(c: Ctx, data: dict[str, str], action: str) -> None:
        if not csrf_ok(console.secret, c.sid, data.get("csrf")):
            console.accounts.audit(
                c.user.name if c.user else None, action, detail="refused: CSRF token missing"
                " or wrong", ok=False, client=c.client,
            )  # fmt: skip
            raise Refused(
                403,
                "Form refused",
                "This form did not come from a page of this console session (the CSRF check"
                " failed), so nothing was changed. Reload the page and try again.",
            )

    def need(c: Ctx, role: str, action: str, target: str = "") -> User:
        assert c.user is not None
        if not c.user.can(role):
            console.accounts.audit(
                c.user.name, action, target=target, detail=f"refused: needs the {role} role",
                ok=False, client=c.client,
            )  # fmt: skip
            raise Refused(
                403,
                "Not allowed",
                f"Your role ({c.user.role}) cannot do this; it needs the {role} role."
                " Nothing was changed.",
            )
        return c.user

    def render(
        request: Request, template: str, c: Ctx, status: int = 200, **values: Any
    ) -> HTMLResponse:
        values.update(
            user=c.user,
            csrf=csrf_token(console.secret, c.sid) if c.sid else "",
            demo_note=console.demo_note,
            broker_ok=console.watcher is not None and console.watcher.subscribed.is_set(),
            broker=f"{console.config.broker.host}:{console.config.broker.port}",
        )
        return templates.TemplateResponse(request, template, values, status_code=status)

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return render(
            request, "error.html", ctx(request), exc.status, title=exc.title, message=exc.message
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return render(
            request, "error.html", ctx(request), exc.status_code,
            title="Not found" if exc.status_code == 404 else "Error", message=str(exc.detail),
        )  # fmt: skip

    def with_session(response: Response, sid: str) -> Response:
        response.set_cookie(
            COOKIE, sign_sid(console.secret, sid), httponly=True, samesite="strict",
            secure=secure, path="/", max_age=12 * 3600,
        )  # fmt: skip
        return response

    # ---- health, login, logout -----------------------------------------------------------
    @app.get("/healthz", response_class=PlainTextResponse)
    def healthz() -> str:
        return "ok"

    @app.get("/login")
    def login_page(request: Request, c: CtxDep, next: str = "/fleet") -> Response:
        if c.user is not None:
            return RedirectResponse(_safe_next(next), status_code=303)
        sid = c.sid or console.accounts.new_session(None)
        page = render(request, "login.html", Ctx(sid, None, c.client), next=_safe_next(next))
        return with_session(page, sid)

    @app.post("/login")
    def login(request: Request, data: FormDep, c: CtxDep) -> Response:
        csrf(c, data, "login")
        name, password = data.get("name", "").strip(), data.get("password", "")
        nxt = _safe_next(data.get("next", "/fleet"))
        wait = console.limiter.retry_after(c.client)
        if wait:
            console.accounts.audit(
                name or None, "login", detail="refused: too many failed logins",
                ok=False, client=c.client,
            )  # fmt: skip
            page = render(
                request, "login.html", c, 429, next=nxt, name=name,
                error=f"Too many failed logins from your address. Try again in {wait} s.",
            )  # fmt: skip
            page.headers["Retry-After"] = str(wait)
            return page
        user = console.accounts.check_password(name, password) if name and password else None
        if user is None:
            fails = console.limiter.failed(c.client)
            console.accounts.audit(
                name or None, "login", detail=f"wrong name or password ({fails} in a minute)",
                ok=False, client=c.client,
            )  # fmt: skip
            left = console.limiter.limit - fails
            more = f" {left} more attempts this minute." if left > 0 else ""
            return render(
                request, "login.html", c, 401, next=nxt, name=name,
                error=f"Wrong name or password.{more}",
            )  # fmt: skip
        console.limiter.succeeded(c.client)
        if c.sid:
            console.accounts.end_session(c.sid)  # a new id at login: no session fixation
        sid = console.accounts.new_session(user.name)
        console.accounts.audit(user.name, "login", detail=f"role {user.role}", client=c.client)
        return with_session(RedirectResponse(nxt, status_code=303), sid)

    @app.post("/logout")
    def logout(data: FormDep, c: LoggedIn) -> Response:
        csrf(c, data, "logout")
        assert c.sid is not None and c.user is not None
        console.accounts.end_session(c.sid)
        console.accounts.audit(c.user.name, "logout", client=c.client)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ---- fleet -------------------------------------------------------------------------
    @app.get("/")
    def home(c: LoggedIn) -> Response:
        return RedirectResponse("/fleet", status_code=303)

    @app.get("/fleet")
    def fleet_page(
        request: Request,
        c: LoggedIn,
        store: str = "",
        state: str = "",
        done: int = 0,
    ) -> Response:
        rows = fleet_view.fleet_rows(console.watcher, console.sink)
        shown = fleet_view.filtered(rows, store or None, state or None)
        stores = sorted({r["store"] for r in rows})
        notice = None
        entry = console.accounts.audit_entry(done) if done else None
        if entry and c.user and entry["user"] == c.user.name and entry["target"] == "fleet":
            notice = f"{entry['action'].capitalize()} {entry['detail']}."
        # Per store: its screens as the boxes report them, against what was last sent.
        screens = {}
        sent = emergencies_sent()
        for st in stores:
            expected = sent.get(st)
            got = fleet_view.screen_rows(console.watcher, st, expected)
            screens[st] = {
                "expected": expected, "total": len(got),
                "showing": sum(s["emergency"] for s in got),
                "not_obeying": sum(s["obeys"] is False for s in got),
            }  # fmt: skip
        return render(
            request, "fleet.html", c, rows=shown, summary=fleet_view.summary(rows),
            stores=stores, states=fleet_view.STATES, store=store, state=state,
            screens=screens, notice=notice,
        )  # fmt: skip

    def store_rows(store: str) -> list[dict[str, Any]]:
        if not _ID.match(store):
            raise HTTPException(404, "No such store.")
        rows = fleet_view.filtered(
            fleet_view.fleet_rows(console.watcher, console.sink), store, None
        )
        if not rows:
            raise HTTPException(404, f"No box of store {store} is known to the console.")
        return rows

    @app.get("/stores/{store}")
    def store_page(request: Request, store: str, c: LoggedIn, done: int = 0) -> Response:
        notice = None
        entry = console.accounts.audit_entry(done) if done else None
        # Only the pusher's own entry for this store: the number in the address is no way to
        # read other entries of the audit log.
        if entry and c.user and entry["user"] == c.user.name and entry["target"] == store:
            notice = (
                f"{entry['action'].capitalize()} sent: {entry['detail']}."
                " Each box acknowledges below as it applies it."
            )
        return store_render(request, c, store, notice=notice)

    def emergencies_sent() -> dict[str, bool]:
        """Per store, what this console last sent it and the broker took: True an emergency,
        False a clear (from the audit log, newest first: one read for every store)."""
        out: dict[str, bool] = {}
        for e in console.accounts.audit_log(limit=2000):
            if e["ok"] and e["action"] in EMERGENCY_ACTIONS:
                out.setdefault(e["target"], e["action"] == "emergency")
        return out

    def emergency_expected(store: str) -> bool | None:
        return emergencies_sent().get(store)

    def store_render(
        request: Request, c: Ctx, store: str, status: int = 200, **values: Any
    ) -> HTMLResponse:
        rows = values.pop("rows", None) or store_rows(store)
        expected = emergency_expected(store)
        screens = fleet_view.screen_rows(console.watcher, store, expected)
        now = time.time()
        waiting = False
        for s in screens:
            shot = console.watcher.screenshot(store, s["screen"]) if console.watcher else None
            asked = console.shot_requests.get((store, s["screen"]))
            s["shot"] = shot
            s["shot_pending"] = bool(
                asked and now - asked < SCREENSHOT_WAIT_S and (not shot or shot["heard"] < asked)
            )
            waiting = waiting or s["shot_pending"]
        return render(
            request, "store.html", c, status, store=store, rows=rows, screens=screens,
            expected=expected, refresh=waiting,
            live=console.watcher.live(store) if console.watcher else None, **values,
        )  # fmt: skip

    @app.post("/stores/{store}/screenshot")
    def screenshot(request: Request, store: str, data: FormDep, c: LoggedIn) -> Response:
        """Ask one screen's player for a picture of what it shows (the box's ``screenshot``
        command, signed on the push path); the page shows it when the box's answer is in."""
        csrf(c, data, "screenshot")
        user = need(c, "operator", "screenshot", store)
        rows = store_rows(store)
        screen = data.get("screen", "")
        known = {
            s["screen"]: s["device"] for s in fleet_view.screen_rows(console.watcher, store, None)
        }
        if screen not in known:
            raise Refused(400, "No such screen", f"No box of {store} reports a screen {screen!r}.")
        cfg = console.config
        version = push.time_version(console.accounts.last_version("command"))
        body = {"command": "screenshot", "screen": screen, "reason": f"console: {user.name}"}
        try:
            push.push(
                cfg.broker.config(), signing_key(), "command", body, store, known[screen],
                version, expires_in_s=cfg.signing.expires_in_s, timeout_s=10.0,
            )  # fmt: skip
        except push.PushError as exc:
            console.accounts.audit(user.name, "screenshot", target=store,
                                   detail=f"{screen}: not sent: {exc}", ok=False,
                                   client=c.client)  # fmt: skip
            return store_render(request, c, store, 502, rows=rows, error=f"Not sent: {exc}")
        console.accounts.used_version("command", version)
        console.shot_requests[(store, screen)] = time.time()
        console.accounts.audit(user.name, "screenshot", target=store,
                               detail=f"{screen} on {known[screen]}; signed command v{version}",
                               client=c.client)  # fmt: skip
        return RedirectResponse(f"/stores/{store}#screen-{screen}", status_code=303)

    @app.get("/stores/{store}/screens/{screen}/screenshot.jpg")
    def screenshot_image(store: str, screen: str, c: LoggedIn) -> Response:
        shot = console.watcher.screenshot(store, screen) if console.watcher else None
        if not _ID.match(store) or shot is None:
            raise HTTPException(404, "No screenshot of that screen yet.")
        return Response(shot["jpeg"], media_type="image/jpeg")

    # ---- emergency -----------------------------------------------------------------------
    def emergency_body(
        data: dict[str, str], user: User
    ) -> tuple[bool, str, str, dict[str, Any] | str]:
        clear = data.get("action") == "clear"
        title, text = data.get("title", ""), data.get("body", "")
        try:
            body: dict[str, Any] | str = (
                push.clear_emergency_body(reason=f"console: {user.name}")
                if clear
                else push.emergency_body(title, text, reason=f"console: {user.name}")
            )
        except push.PushError as exc:
            body = str(exc)
        return clear, title, text, body

    def send_emergency(
        c: Ctx,
        user: User,
        stores: list[str],
        clear: bool,
        title: str,
        body: dict[str, Any],
        scope: str,
    ) -> tuple[list[tuple[str, int]], list[str], int]:
        """One signed command per store (a store's boxes take only their store's), one version
        for all; each store's push recorded on its own, sent or not."""
        cfg = console.config
        version = push.time_version(console.accounts.last_version("command"))
        action = "clear emergency" if clear else "emergency"
        what = "cleared" if clear else f"title {title.strip()!r}"
        sent: list[tuple[str, int]] = []
        failed: list[str] = []
        for store in stores:
            try:
                result = push.push(
                    cfg.broker.config(), signing_key(), "command", body, store, None, version,
                    expires_in_s=cfg.signing.expires_in_s, timeout_s=10.0,
                )  # fmt: skip
            except push.PushError as exc:
                console.accounts.audit(user.name, action, target=store,
                                       detail=f"{scope}: not sent: {exc}", ok=False,
                                       client=c.client)  # fmt: skip
                failed.append(f"{store}: {exc}")
                continue
            console.accounts.used_version("command", version)
            n = console.accounts.audit(
                user.name, action, target=store,
                detail=f"{what}; signed command v{version} to {result.topic}"
                + ("" if scope == "store" else f" ({scope})"),
                client=c.client,
            )  # fmt: skip
            sent.append((store, n))
        return sent, failed, version

    @app.post("/stores/{store}/emergency")
    def emergency(
        request: Request,
        store: str,
        data: FormDep,
        c: LoggedIn,
    ) -> Response:
        csrf(c, data, "emergency")
        user = need(c, "operator", "emergency", store)
        rows = store_rows(store)
        clear, title, text, body = emergency_body(data, user)
        if isinstance(body, str):
            return store_render(request, c, store, 400, rows=rows, error=body, title=title,
                                body=text)  # fmt: skip
        if data.get("step") != "send":
            # The confirmation step: what every screen of the store will show, and one more
            # click (with the same token) to send it.
            screens = fleet_view.screen_rows(console.watcher, store, None)
            return render(request, "confirm.html", c, store=store, stores=[store], rows=rows,
                          screens=screens, clear=clear, title=title.strip(),
                          body=text.strip(), action=f"/stores/{store}/emergency")  # fmt: skip
        sent, failed, _ = send_emergency(c, user, [store], clear, title, body, "store")
        if failed:
            return store_render(request, c, store, 502, rows=rows,
                                error=f"Not sent: {failed[0].split(': ', 1)[1]}",
                                title=title, body=text)  # fmt: skip
        # Post/redirect/get: a reload of the page after a push must not push again.
        return RedirectResponse(f"/stores/{store}?done={sent[0][1]}", status_code=303)

    @app.post("/fleet/emergency")
    def fleet_emergency(request: Request, data: FormDep, c: LoggedIn) -> Response:
        """The same emergency (or clear) to every store the console knows, confirmed with how
        many stores, boxes and screens it reaches."""
        csrf(c, data, "fleet emergency")
        user = need(c, "operator", "fleet emergency", "fleet")
        rows = fleet_view.fleet_rows(console.watcher, console.sink)
        stores = sorted({r["store"] for r in rows})
        clear, title, text, body = emergency_body(data, user)
        if isinstance(body, str) or not stores:
            raise Refused(400, "Nothing sent", body if isinstance(body, str) else
                          "No store is known to the console.")  # fmt: skip
        if data.get("step") != "send":
            screens = [
                s for st in stores for s in fleet_view.screen_rows(console.watcher, st, None)
            ]
            return render(request, "confirm.html", c, store=None, stores=stores, rows=rows,
                          screens=screens, clear=clear, title=title.strip(), body=text.strip(),
                          action="/fleet/emergency")  # fmt: skip
        sent, failed, version = send_emergency(c, user, stores, clear, title, body, "fleet-wide")
        n = console.accounts.audit(
            user.name, "fleet " + ("clear emergency" if clear else "emergency"), target="fleet",
            detail=f"sent to {len(sent)} of {len(stores)} stores, signed command v{version}"
            + (f"; not sent: {'; '.join(failed)}" if failed else ""),
            ok=not failed, client=c.client,
        )  # fmt: skip
        return RedirectResponse(f"/fleet?done={n}", status_code=303)

    # ---- campaigns ---------------------------------------------------------------------
    def known_stores() -> list[str]:
        assert console.pushed is not None
        rows = fleet_view.fleet_rows(console.watcher, console.sink)
        return sorted({r["store"] for r in rows} | set(console.pushed.all()))

    def campaigns_render(
        request: Request, c: Ctx, status: int = 200, **values: Any
    ) -> HTMLResponse:
        assert console.pushed is not None
        values.setdefault("store", "")
        values.setdefault("text", "")
        return render(
            request, "campaigns.html", c, status, pushed=console.pushed.all(),
            stores=known_stores(), tz=console.config.console.timezone, **values,
        )  # fmt: skip

    @app.get("/campaigns")
    def campaigns_page(request: Request, c: LoggedIn, store: str = "", done: int = 0) -> Response:
        assert console.pushed is not None
        notice = None
        entry = console.accounts.audit_entry(done) if done else None
        if entry and c.user and entry["user"] == c.user.name and entry["action"] == "campaigns":
            notice = f"Campaigns pushed to {entry['target']}: {entry['detail']}."
        text = ""
        if store and _ID.match(store):
            record = console.pushed.get(store)
            if record is not None:
                text = json.dumps(record["bundle"], indent=2, ensure_ascii=False)
        return campaigns_render(request, c, store=store, text=text, notice=notice)

    def checked_form(
        request: Request, c: Ctx, data: dict[str, str], action: str
    ) -> tuple[str, str, campaigns_view.Checked | None, HTMLResponse | None]:
        """CSRF, the operator role, the store, then ``campaigns check``'s checks: the bundle,
        or the page saying what is wrong (status 400, nothing sent)."""
        csrf(c, data, action)
        store, text = data.get("store", "").strip(), data.get("bundle", "")
        need(c, "operator", action, store)
        if store and not _ID.match(store):
            raise Refused(400, "No such store", "That store id is not one a box could have.")
        try:
            checked = campaigns_view.check(text)
        except (ValueError, campaigns_view.PreviewError) as exc:
            page = campaigns_render(request, c, 400, store=store, text=text, error=str(exc))
            return store, text, None, page
        return store, text, checked, None

    @app.post("/campaigns/check")
    def campaigns_check(request: Request, data: BundleFormDep, c: LoggedIn) -> Response:
        store, text, checked, page = checked_form(request, c, data, "check campaigns")
        if page is not None:
            return page
        assert checked is not None and console.previewer is not None
        shown = campaigns_view.previews(checked)
        try:
            took = console.previewer.render(shown)
            preview_error = None
        except campaigns_view.PreviewError as exc:
            took, preview_error = 0.0, str(exc)
        dry, dry_error, at = None, None, data.get("at", "").strip()
        if store:
            dry, dry_error, at = store_dry_run(store, checked.body, at)
        return campaigns_render(
            request, c, store=store, text=text, checked=checked, previews=shown,
            preview_error=preview_error, took=took, dry=dry, dry_error=dry_error, at=at,
        )  # fmt: skip

    def store_dry_run(
        store: str, body: dict[str, Any], at: str
    ) -> tuple[dict[str, Any] | None, str | None, str]:
        """The box's decision per screen of ``store`` (as its boxes report them: id, zone,
        personal limit) at ``at`` (the form's local time in the console's zone, else now)."""
        tz = console.config.tz
        try:
            when = datetime.fromisoformat(at) if at else datetime.now(tz)
        except ValueError:
            return None, f"{at!r} is not a time (YYYY-MM-DDTHH:MM)", at
        when = when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)
        screens = [
            {"id": s["screen"], "zone": s["zone"],
             "max_people_for_personal": s.get("max_people_for_personal", 1)}
            for s in fleet_view.screen_rows(console.watcher, store, None) if s.get("zone")
        ]  # fmt: skip
        shown_at = when.strftime("%Y-%m-%dT%H:%M")
        if not screens:
            return None, f"No box of {store} has reported its screens and zones yet.", shown_at
        try:
            return campaigns_view.dry_run(body, screens, when.isoformat()), None, shown_at
        except (ValueError, campaigns_view.PreviewError) as exc:
            return None, str(exc), shown_at

    @app.get("/campaigns/previews/{name}")
    def campaigns_preview(name: str, c: LoggedIn) -> Response:
        assert console.previewer is not None
        path = console.previewer.path(name.removesuffix(".png"))
        if not name.endswith(".png") or path is None or not path.is_file():
            raise HTTPException(404, "No such preview.")
        return Response(path.read_bytes(), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=86400"})  # fmt: skip

    @app.post("/campaigns/push")
    def campaigns_push(request: Request, data: BundleFormDep, c: LoggedIn) -> Response:
        store, text, checked, page = checked_form(request, c, data, "campaigns")
        if page is not None:
            return page
        assert checked is not None and c.user is not None and console.pushed is not None
        if not store:
            return campaigns_render(request, c, 400, store=store, text=text,
                                    error="Choose the store to push to.")  # fmt: skip
        cfg = console.config
        version = push.time_version(console.accounts.last_version("campaigns"))
        b = checked.bundle
        what = f"bundle v{b.version}, {len(b.campaigns)} campaigns"
        try:
            result = push.push(
                cfg.broker.config(), signing_key(), "campaigns", checked.body, store, None,
                version, expires_in_s=cfg.signing.expires_in_s, timeout_s=10.0,
            )  # fmt: skip
        except push.PushError as exc:
            console.accounts.audit(c.user.name, "campaigns", target=store,
                                   detail=f"{what}: not sent: {exc}", ok=False,
                                   client=c.client)  # fmt: skip
            return campaigns_render(request, c, 502, store=store, text=text,
                                    error=f"Not sent: {exc}")  # fmt: skip
        console.accounts.used_version("campaigns", version)
        n = console.accounts.audit(
            c.user.name, "campaigns", target=store,
            detail=f"{what}; signed campaigns v{version} to {result.topic}", client=c.client,
        )  # fmt: skip
        console.pushed.save(store, {
            "bundle": checked.body, "bundle_version": b.version, "campaigns": len(b.campaigns),
            "version": version, "user": c.user.name, "at": time.time(), "topic": result.topic,
        })  # fmt: skip
        return RedirectResponse(f"/campaigns?store={quote(store)}&done={n}", status_code=303)

    # ---- KPIs --------------------------------------------------------------------------
    def kpi_query(
        start: str, end: str, store: str, campaign: str
    ) -> tuple[date, date, list[Any], str | None]:
        tz = console.config.tz
        today = datetime.now(tz).date()
        error = None
        try:
            last = date.fromisoformat(end) if end else today
            first = date.fromisoformat(start) if start else last - timedelta(days=6)
            rows = (
                kpi_rows(
                    console.sink, first, last, tz, store=store or None, campaign=campaign or None
                )  # fmt: skip
                if console.sink is not None
                else []
            )
        except ValueError as exc:
            first, last, rows = today - timedelta(days=6), today, []
            error = f"Dates: {exc}" if "day" in str(exc) else f"Dates: {exc} (use YYYY-MM-DD)"
        return first, last, rows, error

    @app.get("/kpis")
    def kpis_page(
        request: Request,
        c: LoggedIn,
        start: str = "",
        end: str = "",
        store: str = "",
        campaign: str = "",
    ) -> Response:
        first, last, rows, error = kpi_query(start, end, store, campaign)
        days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        campaigns = sorted({r.campaign for r in rows})
        ots = daily_series(rows, days, "campaign", "ots")
        conv = daily_series(rows, days, "campaign", "conversions")
        labels = [d.strftime("%a %d") for d in days]
        exp = experience_query(first, last, store) if not error else []
        watchers = daily_series(exp, days, "store", "watchers")
        all_stores = sorted({r["store"] for r in fleet_view.fleet_rows(None, console.sink)})
        query = "&".join(
            f"{k}={quote(v)}" for k, v in
            (("start", first.isoformat()), ("end", last.isoformat()), ("store", store),
             ("campaign", campaign)) if v
        )  # fmt: skip
        return render(
            request, "kpis.html", c, 400 if error else 200, rows=rows, error=error,
            chart_ots=bar_chart("Opportunities to see per day", labels, ots),
            chart_conv=bar_chart("Attributed conversions per day", labels, conv),
            chart_watchers=bar_chart("Watchers per day (camera)", labels, watchers),
            experience=exp,
            start=first.isoformat(), end=last.isoformat(), store=store, campaign=campaign,
            stores=all_stores, campaigns=campaigns, query=query, tz=console.config.console.timezone,
        )  # fmt: skip

    def experience_query(first: date, last: date, store: str) -> list[ExperienceKpi]:
        if console.sink is None:
            return []
        return experience_rows(console.sink, first, last, console.config.tz, store=store or None)

    @app.get("/kpis/experience.csv")
    def experience_csv_download(
        c: LoggedIn, start: str = "", end: str = "", store: str = "", campaign: str = ""
    ) -> Response:
        first, last, _, error = kpi_query(start, end, store, campaign)
        if error:
            raise Refused(400, "Bad dates", error)
        name = f"experience_{first.isoformat()}_{last.isoformat()}.csv"
        return Response(
            experience_csv(experience_query(first, last, store)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @app.get("/kpis.csv")
    def kpis_csv(
        c: LoggedIn,
        start: str = "",
        end: str = "",
        store: str = "",
        campaign: str = "",
    ) -> Response:
        first, last, rows, error = kpi_query(start, end, store, campaign)
        if error:
            raise Refused(400, "Bad dates", error)
        name = f"kpis_{first.isoformat()}_{last.isoformat()}.csv"
        return Response(
            csv_text(rows), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )  # fmt: skip

    # ---- the signing key -----------------------------------------------------------------
    @app.get("/signing")
    def signing_page(request: Request, c: LoggedIn, done: str = "") -> Response:
        assert console.signer is not None
        notice = {"unlocked": "Unlocked.", "locked": "Locked."}.get(done)
        return render(request, "signing.html", c, state=console.signer.state(),
                      path=str(console.signer.path), notice=notice,
                      minutes=console.config.signing.unlock_minutes)  # fmt: skip

    @app.post("/signing")
    def signing_change(request: Request, data: FormDep, c: LoggedIn) -> Response:
        """Unlock the encrypted signing key with its passphrase (held in memory only), or lock
        it again; either way in the audit log."""
        assert console.signer is not None
        action = "lock signing key" if data.get("action") == "lock" else "unlock signing key"
        csrf(c, data, action)
        user = need(c, "operator", action)
        if action == "lock signing key":
            console.signer.lock()
            console.accounts.audit(user.name, action, client=c.client)
            return RedirectResponse("/signing?done=locked", status_code=303)
        # The same per-client limit as logins: a passphrase is not to be guessed here either.
        wait = console.limiter.retry_after(c.client)
        if wait:
            console.accounts.audit(user.name, action, detail="refused: too many wrong tries",
                                   ok=False, client=c.client)  # fmt: skip
            raise Refused(429, "Too many tries",
                          f"Too many wrong passphrases or logins from your address. Try again in"
                          f" {wait} s. The key stays locked.")  # fmt: skip
        try:
            console.signer.unlock(data.get("passphrase", ""), user.name)
        except ValueError as exc:
            console.limiter.failed(c.client)
            console.accounts.audit(user.name, action, detail=f"refused: {exc}", ok=False,
                                   client=c.client)  # fmt: skip
            return render(request, "signing.html", c, 400, state=console.signer.state(),
                          path=str(console.signer.path), error=f"Not unlocked: {exc}.",
                          minutes=console.config.signing.unlock_minutes)  # fmt: skip
        console.accounts.audit(
            user.name, action,
            detail=f"for {console.config.signing.unlock_minutes:g} min", client=c.client,
        )  # fmt: skip
        return RedirectResponse("/signing?done=unlocked", status_code=303)

    # ---- admin -------------------------------------------------------------------------
    @app.get("/admin/audit")
    def audit_page(request: Request, c: LoggedIn) -> Response:
        need(c, "admin", "view audit log")
        return render(
            request, "audit.html", c, log=console.accounts.audit_log(),
            users=console.accounts.users(),
        )  # fmt: skip

    return app


def _safe_next(target: str) -> str:
    """Only a path of this console after login: never an open redirect to another site."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/fleet"
    return target


def _points_class(u: Uplift | None) -> str:
    """Green or red only when the whole 95% interval is on one side of 0: a week of a small
    store's holdout rarely says more than "not sure yet", and colour must not claim more."""
    if u is None or u.ci_low is None or u.ci_high is None:
        return "muted"
    return "up" if u.ci_low > 0 else "down" if u.ci_high < 0 else "unsure"
