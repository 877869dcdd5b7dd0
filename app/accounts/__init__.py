"""Accounts: roles and what each may do, users, sessions and tokens, rate limits and security headers."""
