"""CR 2.7 Concurrent session control (SL 3-4).

Judges CR 2.7 over ssh and https. Over ssh: one ordinary account opens interactive shells one after the other
while keeping the earlier ones busy. With `policies.session.max_concurrent` N declared, the first N must open and the
N+1st must be refused, which means the device says no (refuses the login, or closes the shell without a
prompt) within `timeouts.reply_s`: a session that merely hangs is no refusal. With no limit declared, up
to PROBE_SESSIONS are tried and the row fails when all of them open. Every session is closed at the end.
Sessions other users hold on the device would count against a device-wide limit: when the session list
still shows any after the idle timeout, the test is not run.
Over https: the same account logs in again and again from separate clients (each a browser), the session probe
page keeping the earlier sessions busy. Beyond the declared limit the login must be refused (the target file's
failure marker) or the oldest sessions ended (the probe shows no more than N still logged in): either limits the
sessions, as CR 2.7 asks. A refusal before N sessions are open is inconclusive (sessions of the account left by
someone else count). Every web session is logged out at the end.
Not exercised: changing the limit (the value judged is the one the target file declares configured).
"""

from __future__ import annotations

import contextlib
import time

import pytest
from iec62443_harness.fixtures.drivers.errors import ConnectionLost, DeviceTimeout
from iec62443_harness.fixtures.drivers.http import LoginRefused as WebLoginRefused
from iec62443_harness.fixtures.drivers.ssh import LoginRefused
from iec62443_harness.fixtures.outcomes import inconclusive, not_run
from iec62443_harness.fixtures.roles import allowed_account
from iec62443_harness.fixtures.sessions import ordinary_account, shell_prompt
from iec62443_harness.fixtures.web_sessions import end_quietly, web_record

PROBE_SESSIONS = 8


def _other_sessions(target, shell, evidence) -> list[str]:  # type: ignore[no-untyped-def]
    """Sessions still listed once earlier ones had time to idle out (empty when nothing can list them)."""
    lister = allowed_account(target, "session_list") if shell.has("session_list") else None
    if lister is None:
        return []
    idle = target.spec.policies.session.idle_timeout_s
    deadline = time.monotonic() + (idle + 1.0 if idle else 0.0)
    while True:
        reply = shell.run(lister, "session_list")
        if reply.denied:
            return []
        listing = [ln.strip() for ln in reply.output.splitlines() if ln.strip()]
        if not listing or time.monotonic() >= deadline:
            evidence.add("check", f"sessions open before the test: {listing or 'none'}")
            return listing
        time.sleep(0.25)


def _open(ssh, creds, stack: contextlib.ExitStack, prompt: str) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    """One more shell: ("accepted", shell), ("refused", detail) or ("hung", detail)."""
    try:
        session = stack.enter_context(ssh.session(creds.username, creds.password))
        shell = stack.enter_context(session.shell())
        shell.expect(prompt)
    except (LoginRefused, ConnectionLost) as exc:
        return "refused", str(exc)
    except DeviceTimeout as exc:
        return "hung", str(exc)
    return "accepted", shell


@pytest.mark.judges("CR 2.7", over=["ssh"])
def test_sessions_beyond_the_limit_are_refused(target, ssh, shell, evidence):
    limit = target.spec.policies.session.max_concurrent
    creds = ordinary_account(target)
    others = _other_sessions(target, shell, evidence)
    if others:
        not_run(f"{len(others)} other sessions are open on the device; a device-wide limit cannot be probed "
                "without ending them")
    prompt = shell_prompt(target)
    tries = limit + 1 if limit else PROBE_SESSIONS
    outcomes: list[str] = []
    with contextlib.ExitStack() as stack:
        held = []
        for _ in range(tries):
            for earlier in held:  # keep the open ones busy, so no idle timeout frees a slot
                earlier.send("")
            outcome, detail = _open(ssh, creds, stack, prompt)
            outcomes.append(outcome)
            if outcome != "accepted":
                evidence.add("check", f"session {len(outcomes)}: {outcome}: {detail}")
                break
            held.append(detail)
    evidence.add("check", f"{creds.username} opened {outcomes.count('accepted')} concurrent ssh sessions "
                          f"(declared limit: {limit or 'none'}); attempts: {', '.join(outcomes)}")
    if limit is None:
        assert outcomes[-1] != "accepted", (
            f"{tries} concurrent ssh sessions of {creds.username} are all accepted, and no limit is declared")
    else:
        assert outcomes[:limit] == ["accepted"] * limit, (
            f"session {len(outcomes)} is {outcomes[-1]} although the declared limit is {limit}")
        assert outcomes[-1] != "accepted", (
            f"{limit + 1} concurrent ssh sessions are accepted although the declared limit is {limit}")
    assert outcomes[-1] == "refused", (
        f"session {len(outcomes)} hangs instead of being refused (no answer within the reply timeout)")


@pytest.mark.judges("CR 2.7", over=["https"])
def test_web_sessions_beyond_the_limit_are_refused(target, https, interface, evidence):
    web_record(target, interface, "session_probe")
    limit = target.spec.policies.session.max_concurrent
    creds = ordinary_account(target)
    tries = limit + 1 if limit else PROBE_SESSIONS
    held, outcomes = [], []
    try:
        for _ in range(tries):
            for earlier in held:  # a request each, so no idle timeout frees a slot
                earlier.logged_in()
            try:
                held.append(https.session(creds.username, creds.password))
            except WebLoginRefused as exc:
                outcomes.append("refused")
                evidence.add("check", f"session {len(outcomes)}: refused: {exc.result.outcome} ({exc.result.detail})")
                break
            outcomes.append("accepted")
        alive = sum(1 for s in held if s.logged_in())
    finally:
        for session in held:
            end_quietly(https, session)
    evidence.add("check", f"{creds.username} logged in {outcomes.count('accepted')} times over {interface} (declared "
                          f"limit: {limit or 'none'}); attempts: {', '.join(outcomes)}; still logged in at the end: "
                          f"{alive}")
    if limit is not None and outcomes[:limit] != ["accepted"] * limit:
        inconclusive(f"login {len(outcomes)} of {creds.username} is refused before the declared limit of {limit}: "
                     "sessions of that account left open elsewhere may count; rerun when none are")
    bound = limit if limit is not None else tries - 1
    assert outcomes[-1] == "refused" or alive <= bound, (
        f"{len(held)} concurrent web sessions of {creds.username} are accepted and {alive} still work, although the "
        + (f"declared limit is {limit}" if limit is not None else "target file declares no limit"))
