"""CR 2.11 Timestamps (SL 1-4); RE(1) Time synchronization (SL 2-4); RE(2) Protection of time source
integrity (SL 4).

Judges CR 2.11 over ssh: the harness logs an account in and notes its own clock just before and after;
every audit record of that login (read with `audit_show`, and received by syslog when the target has a
`syslog:` section) must carry a date and time (ISO 8601; no zone is taken as UTC) within TOLERANCE_S of
that interval. An offset beyond it fails: records could not be correlated with other components'.
Manual: RE(1), synchronization with a system-wide time source (the measured offset and the time settings
`config_show` lists are in the evidence), and RE(2), protection of the time source against tampering.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest
from iec62443_harness.fixtures.audit import FAILURE, LOGIN, SUCCESS, AuditTrail
from iec62443_harness.fixtures.login import accepted
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_run
from iec62443_harness.fixtures.roles import allowed_account

TOLERANCE_S = 2.0
TIME_SETTINGS = re.compile(r"ntp|sntp|ptp|\btime|clock|zone", re.IGNORECASE)


def _iso(posix: float) -> str:
    return datetime.fromtimestamp(posix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def login_offsets(target, shell, ssh, evidence) -> list[tuple[str, float | None]]:  # type: ignore[no-untyped-def]
    """(channel, offset in s from the harness clock, None when not ISO 8601) of each record of a fresh login."""
    trail = AuditTrail(target, shell, evidence)
    reader = trail.reader.username if trail.reader else None
    creds = next((c for c in target.accounts(purpose="normal") if c.password and c.username != reader), None)
    if creds is None:
        not_run("the target file declares no second normal account to log in with")
    mark = trail.mark()
    before = time.time()
    result = ssh.try_login(creds.username, creds.password)
    after = time.time()
    if not accepted(result):
        inconclusive(f"{creds.username} cannot log in ({result.outcome}): check the account")
    records = trail.find(mark, creds.username, LOGIN, SUCCESS, exclude=FAILURE, every_channel=True)
    if not records:
        not_run(f"no audit record of the login of {creds.username} in {trail.where}, so no timestamp to check "
                "(CR 2.8 judges the record)")
    offsets = []
    for record in records:
        when = record.time()
        offset = None if when is None else when - after if when > after else min(0.0, when - before)
        offsets.append((record.channel, offset))
        shown = "no ISO 8601 date and time" if offset is None else f"offset {offset:+.3f} s"
        evidence.add("check", f"{record.channel} record stamped {record.timestamp!r}; harness clock "
                              f"{_iso(before)} .. {_iso(after)}: {shown}")
    return offsets


@pytest.mark.judges("CR 2.11", over=["ssh"])
def test_audit_timestamps_follow_the_clock(target, shell, ssh, evidence):
    for channel, offset in login_offsets(target, shell, ssh, evidence):
        assert offset is not None, f"the {channel} record carries no full date and time (ISO 8601)"
        assert abs(offset) <= TOLERANCE_S, (
            f"the {channel} record's timestamp is {offset:+.1f} s off the harness clock (tolerance {TOLERANCE_S} s)")


@pytest.mark.judges("CR 2.11 RE(1)", over=["ssh"])
def test_time_synchronization(target, shell, ssh, evidence):
    login_offsets(target, shell, ssh, evidence)
    shower = allowed_account(target, "config_show") if shell.has("config_show") else None
    if shower is not None:
        lines = [ln.strip() for ln in shell.run(shower, "config_show").output.splitlines() if TIME_SETTINGS.search(ln)]
        evidence.add("check", f"time settings shown by config_show: {'; '.join(lines) or 'none'}")
    manual("a clock that agrees with the harness now does not show it is synchronized; a human checks", [
        "Find how the component synchronizes its clock (NTP, SNTP, PTP, a fieldbus time master) and configure "
        "it with the site's time source.",
        "Set the component's clock off by some minutes, wait one synchronization interval, and confirm it is "
        "back within the site's tolerance.",
        "Confirm a lost time source is detected and audited."])


@pytest.mark.judges("CR 2.11 RE(2)")
def test_time_source_integrity(target):
    manual("protecting the time source against tampering needs a forged time source", [
        "Confirm the time synchronization is authenticated (NTS, NTP symmetric keys, PTP security, "
        "vendor-specific), per the component's documentation.",
        "Offer the component a time source that does not authenticate, or a forged one: confirm its time is "
        "ignored and the attempt is audited.",
        "Confirm changes to the time source configuration are restricted to authorized roles and audited."])
