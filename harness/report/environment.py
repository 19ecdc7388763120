"""What a run ran on: Python, platform, the harness and every package it depends on, with versions.

Recorded in the results header at the start of a run (so a rebuild elsewhere keeps it) and copied into the
run's manifest: an assessor can tell which code produced the verdicts.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from iec62443_harness import __version__
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

DISTRIBUTION = "iec62443-harness"


def dependency_versions(root: str = DISTRIBUTION) -> dict[str, str]:
    """Name -> version of `root` and every installed distribution it requires, transitively (extras left out)."""
    found: dict[str, str] = {}
    todo = [root]
    while todo:
        name = canonicalize_name(todo.pop())
        if name in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        found[name] = dist.version
        for text in dist.requires or []:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return dict(sorted(found.items()))


def environment() -> dict[str, Any]:
    return {"harness_version": __version__, "python": platform.python_version(),
            "implementation": sys.implementation.name, "platform": platform.platform(),
            "packages": dependency_versions()}
