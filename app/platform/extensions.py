"""Flask extensions, created unbound and attached in create_app()."""

from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect


class FallbackLimiter(Limiter):
    """Flask-Limiter whose in-memory fallback also serves a request that met a dead store after another thread did.

    Flask-Limiter (4.1) marks the store dead in the first thread whose call fails, and re-raises the failure in any
    thread whose call was already under way: a 500 for a login during a Redis outage (seen in CI, two logins at once).
    """

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        try:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
        except RateLimitExceeded:
            raise
        except Exception:
            if not (self._in_memory_fallback_enabled and self._storage_dead):
                raise
            # Another thread switched to the fallback while this one talked to the store: count here as it would.
            self.context.seen_limits.clear()
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)


db = SQLAlchemy()
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# Its store (Redis, shared by every process) is set by app/accounts/security.py. Nothing is limited unless a view
# says so (@limiter.limit); when Redis is unreachable each process counts on its own instead of failing or not limiting.
limiter = FallbackLimiter(key_func=get_remote_address, strategy="moving-window", in_memory_fallback_enabled=True)
