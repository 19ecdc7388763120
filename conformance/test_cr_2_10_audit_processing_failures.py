"""CR 2.10 Response to audit processing failures (SL 1-4).

Judges CR 2.10 as manual: an audit processing failure (storage full, the collector gone, a software or
hardware fault in the audit function) cannot be caused from outside without harm to the component. The
evidence holds what can be seen: the records `audit_show` holds, the audit settings `config_show` lists,
and how many syslog records reached the harness, for the assessor to start from.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.audit import audit_observations
from iec62443_harness.fixtures.outcomes import manual


@pytest.mark.judges("CR 2.10", over=["ssh"])
def test_response_to_audit_processing_failures(target, shell, evidence):
    audit_observations(target, shell, evidence)
    manual("audit processing failures cannot be caused from outside without harm; a human checks the response", [
        "Find the component's documented response to an audit processing failure (storage full, forwarding "
        "failed, audit function fault) and whether it is configurable.",
        "On a lab unit, cause each failure (fill the storage; stop the syslog collector; block its port).",
        "Confirm the component alerts the responsible personnel and responds as documented (overwrite oldest, "
        "stop generating records, buffer and resend).",
        "Confirm the essential function keeps running throughout, and that records buffered during a collector "
        "outage arrive once it is back (if the component claims so)."])
