"""Credentials: where a token comes from and how it is renewed."""
