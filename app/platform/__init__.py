"""Shared ground: config, extensions, database, Redis, processes, the launcher, exceptions, input checks."""
