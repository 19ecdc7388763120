"""CR 1.12 System use notification (SL 1-4).

Judges: CR 1.12, over ssh (the pre-authentication banner, SSH_MSG_USERAUTH_BANNER) and the serial console
(text shown before the login prompt, only what arrives after the harness presses Enter: text left on the
line by an earlier exchange is drained first) and the web interface (https, http: the visible text of the login
page, `interfaces.<web>.login.path`, fetched without logging in). The notice must appear before authentication; when
the target file declares `policies.banner`, the text shown must contain it (whitespace-insensitive). On a web page,
which text is the notice cannot be told without the declared one: without `policies.banner` it is manual.
Manual: whether the notice's wording satisfies the site's legal and policy requirements.
"""

from __future__ import annotations

import html
import re
import secrets

import pytest
from iec62443_harness.fixtures.login import refused
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_applicable

DRAIN_S = 0.2  # what the line still holds from before is read and set aside


def _norm(text: str | None) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def _judge(shown: str | None, declared: str | None, where: str) -> None:
    assert _norm(shown), f"no notice shown before authentication on {where}"
    if declared:
        assert _norm(declared) in _norm(shown), (
            f"the notice on {where} is not the declared one: shown {_norm(shown)[:120]!r}")


@pytest.mark.judges("CR 1.12", over=["ssh"])
def test_notice_before_ssh_login(target, ssh, evidence):
    # A login that cannot succeed: the banner is sent before any credential is judged.
    result = ssh.try_login(f"probe-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
    refused(result)  # a login the device never answered shows nothing about its banner: ERROR
    evidence.add("check", f"banner before authentication: {result.banner!r}")
    _judge(result.banner, target.spec.policies.banner, "ssh")


@pytest.mark.judges("CR 1.12", over=["console"])
def test_notice_before_console_login(target, console, evidence):
    stale = console.read_for(DRAIN_S)
    evidence.add("check", f"set aside before waking the console: {len(stale)} bytes")
    shown = console.wake()
    prompt = re.compile(target.spec.interfaces.console.login_prompt)
    lines = shown.splitlines()
    at = max((i for i, line in enumerate(lines) if prompt.search(line)), default=len(lines))
    before_prompt = "\n".join(lines[:at])  # the prompt's own line ("plc login:") is not a notice
    evidence.add("check", f"text before the login prompt: {before_prompt!r}")
    _judge(before_prompt, target.spec.policies.banner, "the console")


def _visible(page: str) -> str:
    """The text a browser shows: no scripts, styles or tags, entities decoded."""
    page = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", page, flags=re.IGNORECASE | re.DOTALL)
    return html.unescape(re.sub(r"<[^>]*>", " ", page))


@pytest.mark.judges("CR 1.12", over=["https", "http"])
def test_notice_on_the_web_login_page(target, https, interface, evidence):
    rec = target.require(interface)
    if rec.login is None:
        manual(f"interfaces.{interface}.login is not declared: the harness does not know the login page",
               [f"Open the {interface} login page and confirm it shows the system use notification before the "
                "credentials are asked for."])
    with https.client() as client:  # no login: only what is shown before one
        page = client.request("GET", rec.login.path, note="the login page, before any login")
    if 300 <= page.status < 400 and (page.location or "").startswith("https://"):
        not_applicable(f"{interface} serves no login page: it sends the browser to {page.location}, where the "
                       "notice is judged over https")
    if not 200 <= page.status < 300:
        inconclusive(f"the {interface} login page {rec.login.path} answered status {page.status}: no page to read; "
                     f"check interfaces.{interface}.login.path")
    shown = _norm(_visible(page.text))
    evidence.add("check", f"visible text of {rec.login.path} over {interface}: {shown[:300]!r}")
    declared = target.spec.policies.banner
    if not declared:
        manual(f"the {interface} login page shows text, but which of it is a notice cannot be told without the "
               "declared one (policies.banner)", ["Confirm the login page shows the site's system use notification "
                                                  "before the credentials are asked for; then declare it."])
    _judge(shown, declared, f"the {interface} login page")
