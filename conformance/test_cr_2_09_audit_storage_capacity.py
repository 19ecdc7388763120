"""CR 2.9 Audit storage capacity (SL 1-4) and RE(1) Warn when audit record storage capacity threshold
reached (SL 3-4).

Judges both rows as manual: how much audit storage the component allocates, and what it does as that
fills, cannot be judged without filling it (a flood the harness does not run against the audit log).
The evidence holds what can be seen over ssh: how many records `audit_show` returns when asked for
SHOW_COUNT, the oldest and newest timestamps among them, and the settings `config_show` lists about the
audit log, for the assessor to start from.
"""

from __future__ import annotations

import re

import pytest

from conformance.test_cr_2_01_authorization_enforcement import allowed_account
from conformance.test_cr_2_08_auditable_events import ANY_TIME
from harness.outcomes import manual

SHOW_COUNT = 500
AUDIT_SETTINGS = re.compile(r"audit|syslog|\blogs?\b|storage|capacity|retention|record", re.IGNORECASE)


def audit_observations(target, shell, evidence) -> None:  # type: ignore[no-untyped-def]
    """What the shell shows about the audit log: records held, their time span, and audit settings."""
    reader = allowed_account(target, "audit_show") if shell.has("audit_show") else None
    if reader is not None:
        reply = shell.run(reader, "audit_show", count=SHOW_COUNT)
        lines = [ln for ln in reply.output.splitlines() if ln.strip()]
        stamps = [m.group(0) for ln in lines if (m := ANY_TIME.search(ln))]
        span = f", from {stamps[0]} to {stamps[-1]}" if stamps else ""
        evidence.add("check", f"audit_show {SHOW_COUNT} by {reader.username} returned {len(lines)} records{span}")
    shower = allowed_account(target, "config_show") if shell.has("config_show") else None
    if shower is not None:
        output = shell.run(shower, "config_show").output
        settings = [ln.strip() for ln in output.splitlines() if AUDIT_SETTINGS.search(ln)]
        evidence.add("check", f"audit settings shown by config_show: {'; '.join(settings) or 'none'}")
    if target.syslog is not None:
        evidence.add("check", f"syslog records received by the harness so far: {len(target.syslog.messages())}")


@pytest.mark.judges("CR 2.9", over=["ssh"])
def test_audit_storage_capacity(target, shell, evidence):
    audit_observations(target, shell, evidence)
    manual("audit storage capacity can only be judged by filling it, which the harness does not do", [
        "Find how much audit storage the component allocates and whether it is configurable (vendor "
        "documentation, configuration).",
        "Confirm it holds the records the site's log management and retention policy need between collections.",
        "Generate audit records until the storage is full (a lab unit) and confirm what the component does then "
        "(overwrite oldest, stop auditing, stop operation) matches its documentation and is not silent.",
        "Confirm the essential function keeps running while the audit storage is full."])


@pytest.mark.judges("CR 2.9 RE(1)", over=["ssh"])
def test_warning_at_capacity_threshold(target, shell, evidence):
    audit_observations(target, shell, evidence)
    manual("a warning at a storage threshold appears only once the storage fills, which the harness does not do", [
        "Find the configurable threshold of audit storage use at which the component warns (documentation, "
        "configuration).",
        "Fill the audit storage up to the threshold on a lab unit: confirm the warning is issued (to whom, how: "
        "syslog, alarm, management tool) when it is reached, and not before.",
        "Confirm the warning itself is audited."])
