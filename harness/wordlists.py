"""Data the suites try against a device: the curated list of well-known default credentials."""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

DEFAULTS_FILE = Path(__file__).resolve().parent / "data" / "default-credentials.csv"


@cache
def default_credentials() -> tuple[tuple[str, str, str], ...]:
    """(username, password, where it comes from), most common first."""
    with DEFAULTS_FILE.open(newline="", encoding="utf-8") as fh:
        return tuple((r["username"], r["password"], r["source"]) for r in csv.DictReader(fh))


@cache
def published_passwords() -> frozenset[str]:
    """Passwords of the shipped list: public knowledge, so reports need not hide them (they say which)."""
    return frozenset(pw for _, pw, _ in default_credentials() if pw)
