"""Roles and what each may do: the one table read by the schema, the CLI, the views and the templates."""

from __future__ import annotations

# What each role may do; admins and operators also annotate. Order is the CLI's and the error messages'.
PERMISSIONS: dict[str, frozenset[str]] = {
    "annotator": frozenset({"annotate"}),
    "admin": frozenset({"annotate", "import", "export", "retrain"}),
    "operator": frozenset({"annotate", "import", "export", "retrain", "activate"}),
}
ROLES: tuple[str, ...] = tuple(PERMISSIONS)


def can(user, permission: str) -> bool:
    """Whether the user is logged in and their role grants the permission."""
    return bool(user and getattr(user, "is_authenticated", False) and permission in PERMISSIONS.get(user.role, ()))

