"""CR 4.1 Information confidentiality (SL 1-4).

Judges the in-transit part of CR 4.1 on every interface that carries credentials or configuration. Over ssh:
one key exchange must agree on a cipher (never "none"), and the server must not offer "none". Over the
console: a login reached over a network (a socket:// or rfc2217:// URL: a console on TCP) shows its prompt
in clear and fails; a login on a local serial line is manual (physical protection of the line). And on the
device's own addresses (and every declared TCP service's port): a service that greets with a plain-text login
prompt, telnet option negotiation or an FTP greeting, or answers a plain HTTP request with a login (401 or a
password field), carries credentials in clear and fails, named. Manual: confidentiality at rest (checklist).
"""

from __future__ import annotations

import re

import pytest
from iec62443_harness.fixtures import exposure, scan
from iec62443_harness.fixtures.outcomes import manual

CLEAR_LOGIN = ("plain-text login prompt", "telnet (option negotiation)", "ftp or smtp greeting")
HTTP_REQUEST = b"GET / HTTP/1.0\r\n\r\n"
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
