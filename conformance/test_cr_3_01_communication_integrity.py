"""CR 3.1 Communication integrity (SL 1-4), RE(1) Communication authentication (SL 2-4).

Judges CR 3.1 and RE(1) per interface that carries commands. Over modbus_tcp, modbus_rtu, can and console the
device is seen answering a frame that carries no integrity protection of its own (a Modbus read, a CAN frame
it sends, the console's prompt): those protocols have no field for a MAC or signature (a CRC detects noise,
not tampering), so each is a FAIL, which a countermeasure the target file declares for that row and interface
turns into compensated. Over ssh the MAC (or AEAD cipher) one key exchange negotiates is recorded and judged
with the crypto reference (`harness/data/ssh-crypto-reference.yaml`), and a server offering "none" as a MAC
or cipher fails. Over https the web interface's integrity and its authentication of the device rest on its TLS: every
protocol version and suite it accepts and its certificate must meet `harness/data/tls-policy.yaml`
(`fixtures/tls.py`), each finding named. Over plain http the device is seen answering a request that carries no
integrity protection at all: a FAIL, as for Modbus.
"""

from __future__ import annotations

import pytest
from iec62443_harness.evidence import show_bytes
from iec62443_harness.fixtures import crypto
from iec62443_harness.fixtures.drivers.can import show_frame
from iec62443_harness.fixtures.outcomes import inconclusive
from iec62443_harness.fixtures.tls import policy_reference, tls_findings

READ_REGISTER_0 = bytes.fromhex("0300000001")  # function 3, holding register 0, one register
ROWS = ("CR 3.1", "CR 3.1 RE(1)")


def _unprotected(interface: str, what: str) -> str:
    return (f"{interface} carries commands with no integrity protection: {what}; the protocol has no field for a "
            "message authentication code or signature, so a changed or forged frame cannot be told from a real one")


@pytest.mark.judges(*ROWS, over=["modbus_tcp", "modbus_rtu"])
def test_modbus_frames_carry_no_integrity_protection(target, interface, modbus, evidence):
    reply = modbus.send_pdu(READ_REGISTER_0)
    if reply.kind not in ("reply", "exception"):
        inconclusive(f"{interface}: a read of holding register 0 got {reply.kind}: nothing was observed")
    evidence.add("check", f"{interface}: an unauthenticated read was answered: {show_bytes(reply.data, 32)}")
    pytest.fail(_unprotected(interface, f"a plain read was answered ({show_bytes(reply.data, 16)})"), pytrace=False)


@pytest.mark.judges(*ROWS, over=["can"])
def test_can_frames_carry_no_integrity_protection(target, can_bus, evidence):
    window = target.spec.scan.can_listen_s
    msg = can_bus.recv(window)
    if msg is None:
        inconclusive(f"can: the device sent no frame within {window:g} s (scan.can_listen_s): nothing observed")
    evidence.add("check", f"can: the device sends plain frames, e.g. {show_frame(msg)}")
    pytest.fail(_unprotected("can", f"the device sends plain frames (e.g. {show_frame(msg)})"), pytrace=False)


@pytest.mark.judges(*ROWS, over=["console"])
def test_console_carries_no_integrity_protection(target, console, evidence):
    shown = console.wake()  # the login prompt, or a DriverError (ERROR): nothing observed
    evidence.add("check", f"console: plain text on the line: {shown[-120:]!r}")
    what = f"its prompt and every command travel as plain text ({shown.strip()[-40:]!r})"
    pytest.fail(_unprotected("console", what), pytrace=False)


@pytest.mark.judges(*ROWS, over=["ssh"])
def test_ssh_negotiates_a_sound_mac(target, ssh, evidence):
    probe = ssh.probe()
    shake = ssh.handshake()
    problems = []
    for direction, cipher, mac in (("client to server", shake.cipher_c2s, shake.mac_c2s),
                                   ("server to client", shake.cipher_s2c, shake.mac_s2c)):
        integrity = f"AEAD cipher {cipher}" if mac is None else f"MAC {mac} with {cipher}"
        evidence.add("check", f"negotiated {direction}: {integrity}")
        reasons = crypto.judge_algorithm("cipher", cipher) + (crypto.judge_algorithm("mac", mac) if mac else [])
        if reasons:
            problems.append(f"{direction}: {integrity} ({'; '.join(reasons)})")
    offered_none = [f"{kind} none" for kind, names in (("MAC", probe.macs_c2s + probe.macs_s2c),
                                                          ("cipher", probe.ciphers_c2s + probe.ciphers_s2c))
                    if "none" in names]
    assert not offered_none, f"the ssh server offers {' and '.join(offered_none)}: integrity can be switched off"
    assert not problems, (f"the ssh session's integrity rests on algorithms the reference rejects: "
                          f"{' | '.join(problems)} [reference: {crypto.reference().label}]")


@pytest.mark.judges(*ROWS, over=["https"])
def test_tls_protects_the_web_interface(target, interface, evidence):
    findings = tls_findings(target, interface, evidence)
    evidence.add("check", f"the {interface} records are protected by the TLS judged against {policy_reference()}")
    assert not findings, (f"the {interface} interface's integrity and authentication rest on TLS the policy rejects: "
                          f"{' | '.join(findings)}")


@pytest.mark.judges(*ROWS, over=["http"])
def test_plain_http_carries_no_integrity_protection(target, https, evidence):
    with https.client() as client:
        answer = client.request("GET", "/", follow=False, note="a plain http request")
    evidence.add("check", f"http: GET / answered status {answer.status} in clear")
    pytest.fail(_unprotected("http", f"a plain request was answered (status {answer.status}); neither the request "
                                     "nor the answer is protected by TLS"), pytrace=False)
