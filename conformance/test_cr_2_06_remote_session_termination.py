"""CR 2.6 Remote session termination (SL 2-4).

Judges CR 2.6 over ssh and https. Over ssh: an administrator ends another user's remote session. An ordinary
account holds an interactive ssh shell; the administrator lists the sessions (`session_list`), finds that one (its user,
and the client's own port when the list shows it) and ends it (`session_kill`); the shell must then be
closed by the device within `timeouts.reply_s`. Meanwhile the shell is kept busy with blank lines, so an
idle timeout cannot end it in the kill's place.
Over https (the web-management interface), two alternatives (the standard's "or": one shown working is enough,
the other's not-run is named in the row's reason; a failure of either counts):
- the user who opened a web session ends it ("manually by the user that initiated the session"): after the
  declared logout (`login.logout`), the session id, replayed alone from another client to the session probe page,
  must give no session. Not run when the target file declares no logout request.
- an administrator ends it ("manually by a local authority"), where the device offers that: the management
  shell's session list shows the ordinary account's web session (a line naming the user and http/https), the
  administrator kills it (`session_kill`), and the id, replayed, must give no session. Not run when the list shows
  no web session (a web UI of its own for this cannot be declared in the target file yet).
The automatic termination after inactivity is judged with CR 2.5 (over https too). Manual when the target file
declares no session operations.
"""

from __future__ import annotations

import contextlib
import re
import time

import pytest
from iec62443_harness.fixtures.drivers.errors import ConnectionLost
from iec62443_harness.fixtures.outcomes import not_run
from iec62443_harness.fixtures.roles import allowed_account
from iec62443_harness.fixtures.sessions import open_shell, ordinary_account, shell_prompt
from iec62443_harness.fixtures.web_sessions import confirmed_session, end_quietly, replayed_alive, web_record

KEEP_BUSY_S = 0.3  # how often the victim's shell gets a blank line while the kill takes effect


def find_session(listing: str, username: str, port: int) -> str | None:
    """The id of `username`'s session in a session listing, preferring the line that shows our client port."""
    lines = [ln for ln in listing.splitlines() if re.search(rf"\b{re.escape(username)}\b", ln)]
    lines.sort(key=lambda ln: f":{port}" not in ln)
    for line in lines:
        found = re.search(r"\bid\s*[=:]?\s*(\d+)", line, re.IGNORECASE) or re.match(r"\W*(\d+)\b", line)
        if found:
            return found.group(1)
    return None


def _administrator(target, shell, checklist: list[str]):  # type: ignore[no-untyped-def]
    """The account that ends sessions, once the shell is seen to offer it and the target file allows the change."""
    shell.require("session_list", "session_kill", checklist=checklist)
    target.guard("ssh").require("config_changes")  # ending a session changes the device: asked before any byte
    admin = allowed_account(target, "session_kill")
    if admin is None:
        not_run("no declared normal account may end sessions (session_kill in policies.roles)")
    return admin


@pytest.mark.judges("CR 2.6", over=["ssh"])
def test_administrator_ends_a_session(target, ssh, shell, evidence):
    admin = _administrator(target, shell, [
        "Open a remote session as an ordinary user.",
        "As an administrator, find that session and end it (management tool, web UI, command).",
        "Confirm the session is closed at once and cannot be used any more, and that the kill is audited."])
    victim = ordinary_account(target)
    prompt = shell_prompt(target)
    with contextlib.ExitStack() as stack:
        session, held = open_shell(ssh, victim, stack, prompt)
        port = session.transport.sock.getsockname()[1]
        held.send("")  # fresh input, so the idle timeout is far away
        with shell.ssh.session(admin.username, admin.password) as admin_session:
            listing = admin_session.run(shell.command("session_list")).output
            evidence.add("check", f"session list: {listing.strip()!r}")
            sid = find_session(listing, victim.username, port)
            assert sid is not None, f"the session list does not show {victim.username}'s session (client port {port})"
            killed = admin_session.run(shell.command("session_kill", id=sid)).output
            start = time.monotonic()
        assert not re.search(target.spec.shell.denied_pattern, killed, re.IGNORECASE), (
            f"{admin.username} may end sessions by the declared roles, yet is refused: {killed.strip()[:100]!r}")
        deadline = start + target.spec.interfaces.ssh.timeouts.reply_s
        closed = False
        while not closed and time.monotonic() < deadline:
            closed = held.wait_closed(KEEP_BUSY_S)
            if not closed:
                try:
                    held.send("")
                except ConnectionLost:
                    closed = True
        elapsed = time.monotonic() - start
    evidence.add("check", f"{admin.username} killed session {sid} of {victim.username}: {killed.strip()[:100]!r}; "
                          f"the shell {'closed' if closed else 'was still open'} {elapsed:.2f} s later")
    assert closed, f"{victim.username}'s session is still open {elapsed:.1f} s after the administrator ended it"


@pytest.mark.judges("CR 2.6", over=["https"], alternative="termination")
def test_web_session_ends_at_logout(target, https, interface, evidence):
    rec = web_record(target, interface, "session_cookie", "session_probe")
    if rec.login.logout is None:
        not_run(f"interfaces.{interface}.login.logout is not declared: the harness knows no way to end a web session "
                "(a web interface without a logout cannot be judged here; declare it if it has one)")
    creds = ordinary_account(target)
    with confirmed_session(https, creds) as session:
        sid = session.session_id
        answer = session.logout()
        evidence.add("check", f"{creds.username} logged out: status {answer.status}")
    assert not replayed_alive(https, sid, evidence, "after logout"), (
        f"{creds.username}'s web session still works after the user logged out: it was never ended")


@pytest.mark.judges("CR 2.6", over=["https"], alternative="termination")
def test_administrator_ends_a_web_session(target, https, shell, interface, evidence):
    web_record(target, interface, "session_cookie", "session_probe")
    admin = _administrator(target, shell, [
        "Log in to the web interface as an ordinary user.",
        "As an administrator, find that web session and end it (the web UI's session page, or a command).",
        "Confirm a request carrying the ended session's cookie is refused."])
    victim = ordinary_account(target)
    session = confirmed_session(https, victim)
    try:
        sid = session.session_id
        with shell.ssh.session(admin.username, admin.password) as admin_session:
            listing = admin_session.run(shell.command("session_list")).output
            evidence.add("check", f"session list: {listing.strip()!r}")
            web = "\n".join(ln for ln in listing.splitlines() if re.search(r"\bhttps?\b", ln, re.IGNORECASE))
            found = find_session(web, victim.username, -1)
            if found is None:
                not_run(f"the session list shows no web session of {victim.username}: the device offers no "
                        "administrator's end of a web session here (the logout alternative judges the row over "
                        f"{interface})")
            killed = admin_session.run(shell.command("session_kill", id=found)).output
        evidence.add("check", f"{admin.username} killed session {found}: {killed.strip()[:100]!r}")
        assert not re.search(target.spec.shell.denied_pattern, killed, re.IGNORECASE), (
            f"{admin.username} may end sessions by the declared roles, yet is refused: {killed.strip()[:100]!r}")
        alive = replayed_alive(https, sid, evidence, "after the administrator's kill")
    finally:
        end_quietly(https, session)
    assert not alive, f"{victim.username}'s web session still works after the administrator ended it"
