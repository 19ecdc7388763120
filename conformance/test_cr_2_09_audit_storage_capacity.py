"""CR 2.9 Audit storage capacity (SL 1-4) and RE(1) Warn when audit record storage capacity threshold
reached (SL 3-4).

Judges both rows as manual: how much audit storage the component allocates, and what it does as that
fills, cannot be judged without filling it (a flood the harness does not run against the audit log).
The evidence holds what can be seen over ssh (`fixtures.audit.audit_observations`): how many records
`audit_show` returns when asked for SHOW_COUNT, the oldest and newest timestamps among them, and the settings
`config_show` lists about the audit log, for the assessor to start from.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.audit import audit_observations
from iec62443_harness.fixtures.outcomes import manual


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
