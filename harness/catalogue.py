"""The 62443-4-2 catalogue, as data: one `Row` per CR, component-type requirement and enhancement.

The rows live in `harness/data/catalogue.csv` (the best public reading, with its sources noted in the
README). A lab corrects that file, not code. A certification run must check it against the standard.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from iec62443_harness.errors import HarnessError

CATALOGUE_FILE = Path(__file__).resolve().parent / "data" / "catalogue.csv"
FRS = tuple(f"FR{n}" for n in range(1, 8))
TYPES = ("SAR", "EDR", "HDR", "NDR")


@dataclass(frozen=True)
class Row:
    id: str
    kind: str  # CR, TYPE, NDR, RE, none
    fr: str
    title: str
    applies_to: frozenset[str]  # subset of TYPES; empty for rows with no component requirement
    min_sl: int | None  # None for rows with no component requirement
    automation: str  # A, P, M, N/A
    note: str

    def applies(self, component_type: str) -> bool:
        """Whether the row binds a component of this type ('EDR', ...)."""
        return component_type in self.applies_to

    @property
    def has_requirement(self) -> bool:
        return self.kind != "none"


def _row(rec: dict[str, str]) -> Row:
    applies = rec["applies_to"].strip()
    types = frozenset(TYPES) if applies == "all" else frozenset(applies.split()) - {"none"}
    return Row(id=rec["id"].strip(), kind=rec["kind"].strip(), fr=rec["fr"].strip(), title=rec["title"].strip(),
               applies_to=types, min_sl=int(rec["min_sl"]) if rec["min_sl"].strip() else None,
               automation=rec["automation"].strip(), note=rec.get("note", "").strip())


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> tuple[Row, ...]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = tuple(_row(rec) for rec in csv.DictReader(fh))
    except (OSError, KeyError, ValueError) as exc:
        raise HarnessError(f"catalogue {path} is unreadable ({exc}); restore it from git") from None
    return rows


@cache
def catalogue_index(path: Path = CATALOGUE_FILE) -> dict[str, Row]:
    return {row.id: row for row in load_catalogue(path)}


def check_ids(ids: tuple[str, ...] | list[str], where: str) -> None:
    """Raise a one-line error for any id the catalogue does not have (a typo in a marker, a target file)."""
    index = catalogue_index()
    for rid in ids:
        if rid not in index:
            close = [k for k in index if k.replace(" ", "") .lower() == rid.replace(" ", "").lower()]
            hint = f" (did you mean {close[0]!r}?)" if close else " (ids are written like 'CR 1.11 RE(1)')"
            raise HarnessError(f"{where} names {rid!r}, which is not in the catalogue{hint}")
