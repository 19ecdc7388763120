"""CR 1.2 Software process and device identification and authentication (SL 2-4), RE(1) Unique
identification and authentication (SL 3-4).

Judges CR 1.2 over ssh (a client presenting a key the device has never seen is refused), Modbus TCP/RTU
and CAN (a master or node presenting no identity at all is served an object the target file declares: a
failure unless the target file declares a compensating countermeasure). Only the protocol's own "not for
you" is a refusal (Modbus exception 01, CANopen abort 0x06010000); any other exception or abort, or
silence, is inconclusive (ERROR). RE(1) is manual: whether every process and device identity is unique
cannot be seen from one client.
"""

from __future__ import annotations

import paramiko
import pytest
from iec62443_harness.fixtures.canopen import sdo_upload, show, upload_refused
from iec62443_harness.fixtures.login import modbus_read_refused, refused
from iec62443_harness.fixtures.outcomes import manual


@pytest.mark.judges("CR 1.2", over=["ssh"])
def test_unknown_key_is_refused(target, ssh, evidence):
    stranger = paramiko.ECDSAKey.generate(bits=256)
    for creds in target.accounts(purpose="normal"):
        result = ssh.try_login(creds.username, pkey=stranger)
        evidence.add("check", f"{creds.username} with a key never enrolled ({stranger.fingerprint}) -> "
                              f"{result.outcome}")
        assert refused(result), f"ssh takes a key the device has never seen for {creds.username} ({result.outcome})"


@pytest.mark.judges("CR 1.2", over=["modbus_tcp", "modbus_rtu"])
def test_modbus_master_needs_no_identity(target, modbus, evidence):
    what, answer, was_refused = modbus_read_refused(target, modbus)
    evidence.add("check", f"an anonymous master read {what} -> {answer}")
    assert was_refused, "any Modbus master is served without identifying or authenticating itself"


@pytest.mark.judges("CR 1.2", over=["can"])
def test_can_node_needs_no_identity(target, can_bus, evidence):
    iface = target.spec.interfaces.can
    what, wait = f"object 0x{iface.sdo_read_index:04x} (interfaces.can.sdo_read_index)", iface.timeouts.reply_s
    reply = sdo_upload(can_bus, iface.node_id, iface.sdo_read_index, timeout=wait)
    evidence.add("check", f"an anonymous node's SDO upload of {what} -> {show(reply)}")
    assert upload_refused(reply, what, wait), "any CAN node is served without identifying itself"


@pytest.mark.judges("CR 1.2 RE(1)")
def test_unique_process_and_device_identities(target):
    manual("the uniqueness of every software process and device identity cannot be seen from one client",
           ["List every machine-to-machine connection the component accepts (protocols, services).",
            "For each, confirm the peer is authenticated with an identity of its own (key, certificate), "
            "not a shared secret.",
            "Confirm the identities are unique per process/device (vendor design evidence)."])
