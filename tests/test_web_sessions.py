"""What the FR1/FR2 suites rely on over https, against the emulated PLC's real web UI: the page helpers CR 1.10
compares with, the per-user session limit CR 2.7 observes, an ended session replayed (CR 2.5, 2.6), and the
certificate checked on every new TLS connection (pinned, or the run's first one when nothing is pinned).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from iec62443_harness import labs
from iec62443_harness.evidence import Evidence
from iec62443_harness.fixtures.drivers.http import (
    CertificateMismatch,
    HttpDriver,
    LoginRefused,
    WebLoginOutcome,
    input_type,
    without_nonces,
)
from iec62443_harness.fixtures.login import LoginSurface
from iec62443_harness.fixtures.outcomes import Manual
from iec62443_harness.fixtures.registry import Registry
from iec62443_harness.fixtures.web_sessions import end_quietly, replayed_alive, web_record
from iec62443_harness.target import TargetSpec

pytestmark = pytest.mark.timeout(60)
LOGIN = {"path": "/login", "success_marker": "Logged in as",
         "failure_marker": "Login incorrect|Unknown user|Wrong password|Too many sessions",
         "logout": {"path": "/logout"}, "session_probe": "/status", "session_probe_marker": "Logged in as"}


def registry(running: labs.Running, **web: object) -> Registry:
    record = {**running.endpoints["https"], "session_cookie": "sid", "login": LOGIN,
              "csrf": {"source": "form", "name": "csrf_token", "page": "/status"},
              "timeouts": {"connect_s": 2.0, "reply_s": 2.0}, **web}
    spec = TargetSpec.model_validate({"identity": {"vendor": "T", "model": "M", "firmware": "1"},
                                      "component_type": "embedded_device", "security_level": 2,
                                      "interfaces": {"https": record}, "safety": {"rates": {"https": 1000}}})
    return Registry(spec)


def driver(reg: Registry, evidence: Evidence | None = None) -> HttpDriver:
    return reg.driver("https", evidence or Evidence(head=500))


@pytest.fixture(scope="module")
def sl2() -> Iterator[labs.Running]:
    running = labs.start("simplc", "sl2")
    yield running
    running.stop()


def engineer(running: labs.Running) -> tuple[str, str]:
    return "engineer", running.secrets["SIMPLC_ENGINEER_PASSWORD"]


# --- page helpers


def test_hidden_values_are_masked_and_visible_text_kept() -> None:
    a = '<p class=error>Login incorrect</p><input type=hidden name=csrf_token value="abc"><meta name=n content=x>'
    b = "<p class=error>Login incorrect</p><input type=hidden name=csrf_token value='zzz'><meta name=n content=y>"
    assert without_nonces(a) == without_nonces(b).replace("'", "")  # only the token and the nonce differed
    c = '<p class=error>Unknown user</p><input type=hidden name=csrf_token value="abc">'
    assert without_nonces(c) != without_nonces(a)
    assert 'value="kept"' in without_nonces('<input name=username value="kept">')  # not hidden: kept


def test_input_type_reads_the_password_field() -> None:
    page = "<form><input name=username><input type='password' name=password><input name=pin type=text></form>"
    assert input_type(page, "password") == "password"
    assert input_type(page, "username") == "text"  # no type: a text field
    assert input_type(page, "pin") == "text"
    assert input_type(page, "otp") is None


# --- the emulator's web sessions, as the suites see them


def test_a_users_web_sessions_are_limited_and_a_logout_frees_one(sl2: labs.Running) -> None:
    https = driver(registry(sl2))
    first, second = (https.session(*engineer(sl2)) for _ in range(2))  # max_sessions 2 on sl2
    try:
        with pytest.raises(LoginRefused) as refused:
            https.session(*engineer(sl2))
        assert refused.value.result.outcome is WebLoginOutcome.REJECTED
        assert "Too many sessions" in refused.value.result.answer
        admin = https.session("admin", sl2.secrets["SIMPLC_ADMIN_PASSWORD"])  # per user: another one may log in
        admin.logout()
        admin.close()
        first.logout()
        third = https.session(*engineer(sl2))
        assert third.logged_in() and second.logged_in()
        third.logout()
    finally:
        for s in (first, second):
            end_quietly(https, s)  # logged out (again), so the next test finds no session of engineer


def test_an_ended_session_is_refused_when_replayed_and_attempts_log_out(sl2: labs.Running) -> None:
    evidence = Evidence(head=500)
    https = driver(registry(sl2), evidence)
    session = https.session(*engineer(sl2))
    sid = session.session_id or ""
    assert replayed_alive(https, sid, evidence, "live")
    session.logout()
    session.close()
    assert not replayed_alive(https, sid, evidence, "after logout")
    surface = LoginSurface("https", https)
    for _ in range(3):  # more than max_sessions: each accepted attempt is logged out again
        assert surface.attempt(*engineer(sl2)).accepted


# --- the certificate on every new connection


@pytest.mark.parametrize("pinned", [True, False])
def test_a_certificate_changed_mid_run_is_refused(pinned: bool) -> None:
    running = labs.start("simplc", "sl1")
    try:
        reg = registry(running) if pinned else registry(running, certificate_sha256=None)
        creds = ("engineer", running.secrets["SIMPLC_ENGINEER_PASSWORD"])
        assert driver(reg).try_login(*creds).outcome is WebLoginOutcome.ACCEPTED
        running.restart()  # the same port, a new certificate; the run still expects the old one
        assert running.endpoints["https"]["base_url"] == reg.spec.interfaces.https.base_url
        evidence = Evidence(head=500)
        with pytest.raises(CertificateMismatch, match="pinned" if pinned else "first saw"):
            driver(reg, evidence).try_login(*creds)
        assert not any("login engineer" in line for line in evidence.lines()), "a request was written"
    finally:
        running.stop()


# --- what the target file must declare


class _Target:
    def __init__(self, **web: object) -> None:
        self.record = TargetSpec.model_validate({
            "identity": {"vendor": "T", "model": "M", "firmware": "1"}, "component_type": "embedded_device",
            "security_level": 2, "interfaces": {"https": {"base_url": "https://127.0.0.1:1", **web}}}).interfaces.https

    def require(self, interface: str):  # type: ignore[no-untyped-def]
        return self.record


@pytest.mark.parametrize(("web", "named"), [
    ({}, "interfaces.https.login is not declared"),
    ({"login": {k: v for k, v in LOGIN.items() if k != "logout"}}, "interfaces.https.login.logout is not declared"),
    ({"login": LOGIN}, "interfaces.https.session_cookie is not declared"),
])
def test_a_missing_declaration_is_manual_and_named(web: dict, named: str) -> None:
    with pytest.raises(Manual, match=named) as ended:
        web_record(_Target(**web), "https", "session_cookie" if "session_cookie" in named else "logout")
    assert any("Declare" in step for step in ended.value.checklist)


def test_a_complete_declaration_is_returned() -> None:
    target = _Target(login=LOGIN, session_cookie="sid")
    assert web_record(target, "https", "session_cookie", "session_probe", "logout") is target.record
