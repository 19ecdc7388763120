"""CR 4.1 Information confidentiality (SL 1-4).

Judges the in-transit part of CR 4.1 on every interface that carries credentials or configuration. Over ssh:
one key exchange must agree on a cipher (never "none"), and the server must not offer "none". Over the
console: a login reached over a network (a socket:// or rfc2217:// URL: a console on TCP) shows its prompt
in clear and fails; a login on a local serial line is manual (physical protection of the line). And on the
device's own addresses (and every declared TCP service's port): a service that greets with a plain-text login
prompt, telnet option negotiation or an FTP greeting, or answers a plain HTTP request with a login (401 or a
password field), carries credentials in clear and fails, named. Over https: no cipher suite the web interface
accepts leaves the traffic unencrypted or export-grade (NULL, EXPORT; `fixtures/tls.py`: the rest of the TLS is CR
4.3's). Over plain http: a login page served there (a password field whose form is not sent to an https:// URL, a
401 asking for credentials, or the session cookie set) makes a browser send credentials in clear, and fails; a
redirect to https passes. No credential is ever sent over plain http by the harness.
Manual: confidentiality at rest (checklist).
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures import exposure, scan
from iec62443_harness.fixtures.outcomes import inconclusive, manual
from iec62443_harness.fixtures.tls import tls_inventory

CLEAR_LOGIN = ("plain-text login prompt", "telnet (option negotiation)", "ftp or smtp greeting")
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
NO_ENCRYPTION = re.compile(r"NULL|EXPORT")  # IANA suite names: no cipher, or a 40/56-bit one
_FORM = re.compile(r"<form\b[^>]*>.*?</form\s*>", re.IGNORECASE | re.DOTALL)
_PASSWORD = re.compile(r"<input\b[^>]*type\s*=\s*[\"']?password", re.IGNORECASE)
_ACTION = re.compile(r"\baction\s*=\s*[\"']?([^\"'\s>]+)", re.IGNORECASE)
_HTTP_LOGIN = re.compile(rb"^HTTP/\S+ 401|www-authenticate:|type=[\"']?password", re.IGNORECASE | re.MULTILINE)


@pytest.mark.judges("CR 4.1", over=["ssh"])
def test_ssh_encrypts(target, ssh, evidence):
    probe = ssh.probe()
    shake = ssh.handshake()
    evidence.add("check", f"negotiated ciphers: {shake.cipher_c2s} / {shake.cipher_s2c}")
    assert "none" not in (shake.cipher_c2s, shake.cipher_s2c), "the ssh session is not encrypted (cipher none)"
    assert "none" not in probe.ciphers_c2s + probe.ciphers_s2c, "the ssh server offers the cipher none"


@pytest.mark.judges("CR 4.1", over=["console"])
def test_console_login_is_not_on_a_network_in_clear(target, console, evidence):
    url = target.spec.interfaces.console.url or ""
    shown = console.wake()
    evidence.add("check", f"console at {url}: the login prompt arrives as plain text: {shown.strip()[-60:]!r}")
    if url.startswith(("socket://", "rfc2217://")):
        pytest.fail(f"the console login is reached over TCP ({url}) and shows its prompt in clear "
                    f"({shown.strip()[-40:]!r}): user names and passwords cross the network unencrypted",
                    pytrace=False)
    manual("the console is a local serial line: its login is in clear, and only its physical protection keeps "
           "credentials confidential", [f"Confirm the serial console line ({url}) is only reachable inside a "
                                        "locked enclosure or cabinet.",
                                        "Confirm no terminal server or serial-over-IP adapter puts it on a network."])


@pytest.mark.judges("CR 4.1", over=["https"])
def test_tls_encrypts_the_web_interface(target, interface, evidence):
    inv = tls_inventory(target, interface, evidence)
    clear = [f"{suite} ({version})" for version in inv.offered() for suite in inv.protocols[version]
             if NO_ENCRYPTION.search(suite)]
    accepted = sum(len(inv.protocols[v]) for v in inv.offered())
    evidence.add("check", f"{accepted} suite(s) accepted over {', '.join(inv.offered())}; without real encryption "
                          f"(NULL, EXPORT): {', '.join(clear) or 'none'}")
    if not accepted:
        inconclusive(f"the {interface} interface accepted no suite in the scan: nothing was observed")
    assert not clear, f"the {interface} interface accepts suites that encrypt weakly or not at all: {', '.join(clear)}"


@pytest.mark.judges("CR 4.1", over=["http"])
def test_no_login_over_plain_http(target, https, interface, evidence):
    rec = target.require(interface)
    path = rec.login.path if rec.login is not None else "/"
    with https.client() as client:  # only asks: no credential is sent in clear
        answer = client.request("GET", path, follow=False, note="the login page over plain http")
    location = answer.location or ""
    if 300 <= answer.status < 400 and location.startswith("https://"):
        evidence.add("check", f"plain http {path} sends the browser to {location}")
        return
    forms = [f for f in _FORM.findall(answer.text) if _PASSWORD.search(f)]
    in_clear = [f for f in forms if not ((m := _ACTION.search(f)) and m.group(1).lower().startswith("https://"))]
    cookie = answer.cookie(rec.session_cookie) if rec.session_cookie else None
    asks = answer.status == 401 or "www-authenticate" in answer.headers
    evidence.add("check", f"plain http {path}: status {answer.status}; password form(s) {len(forms)}, sent in clear "
                          f"{len(in_clear)}; HTTP authentication asked {'yes' if asks else 'no'}; session cookie "
                          f"{cookie.describe() if cookie else 'none'}")
    what = [w for w, seen in (("a login form sent over http", in_clear), ("HTTP authentication", asks),
                              ("the session cookie", cookie)) if seen]
    assert not what, (f"the web interface takes credentials over plain http ({path}: {', '.join(what)}): user names, "
                      "passwords and sessions cross the network in clear")


@pytest.mark.judges("CR 4.1")
def test_no_login_in_clear_on_tcp_services(target, evidence):
    guard, timeout = target.guard("scan"), target.spec.scan.timeout_s
    clear = []
    own, _ = exposure.places(target.spec)
    surveys = exposure.survey(target, evidence) if own else []
    looked = 0
    quiet = _interface_ports(target)  # never sent an HTTP request: they speak a protocol the file names
    for survey in surveys:  # found by the scan, reached from the network's namespace
        def check(survey=survey) -> list[str]:
            return [f for p in survey.tcp.open
                    if (f := _clear_login(survey.place.address, p, guard, timeout, p not in quiet))]
        clear += scan.in_namespace(survey.place.namespace, check)
        looked += len(survey.tcp.open)
    scanned = {(s.place.address, p) for s in surveys if s.place.namespace is None for p in s.tcp.open}
    for address, port in _declared(target):
        if (address, port) not in scanned:
            looked += 1
            if finding := _clear_login(address, port, guard, timeout, port not in quiet):
                clear.append(finding)
    evidence.add("check", f"{looked} TCP service(s) looked at for a login in clear")
    assert not clear, f"credentials would cross the network in clear: {' | '.join(clear)}"


def _declared(target) -> list[tuple[str, int]]:
    own, shared = exposure.places(target.spec)
    return [(place.address, port) for place in [*own, *shared] if place.namespace is None
            for port in exposure.declared_tcp(target.spec, place)]


def _interface_ports(target) -> set[int]:
    """Ports of declared services that are one of the target's interfaces (Modbus, SSH), explicit or live."""
    ports = set()
    for svc in target.spec.services:
        if svc.interface in ("modbus_tcp", "ssh") and svc.protocol == "tcp":
            rec = getattr(target.spec.interfaces, svc.interface)
            ports |= {p for p in (svc.port, rec.port if rec else None) if p}
    return ports


def _clear_login(address: str, port: int, guard, timeout: float, http: bool) -> str | None:  # type: ignore[no-untyped-def]
    banner = scan.grab_banner(address, port, guard, timeout)
    if banner.guess in CLEAR_LOGIN:
        return f"{address} {banner.describe()}"
    if http and not banner.data:  # a silent service may be a web server: ask it for its front page, in plain HTTP
        page = scan.grab_banner(address, port, guard, timeout, send=HTTP_REQUEST)
        if page.data.startswith(b"HTTP/") and _HTTP_LOGIN.search(page.data):
            return f"{address} tcp/{port}: plain HTTP login ({page.data[:60]!r})"
    return None


@pytest.mark.judges("CR 4.1")
def test_confidentiality_at_rest(target):
    manual("what the device stores, and how, cannot be seen over its interfaces",
           ["List the information the component stores that needs confidentiality: credentials, keys, "
            "configuration, recipes, logs.",
            "Confirm each is encrypted at rest or protected by access control the vendor documents.",
            "Confirm backups and exported configurations do not hold passwords or keys in clear."])
