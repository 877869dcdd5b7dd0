"""Flask extensions, created unbound and attached in create_app()."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

db = SQLAlchemy()
migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# Its store (Redis, shared by every process) is set by app/accounts/security.py. Nothing is limited unless a view
# says so (@limiter.limit); when Redis is unreachable each process counts on its own instead of failing or not limiting.
limiter = Limiter(key_func=get_remote_address, strategy="moving-window", in_memory_fallback_enabled=True)
