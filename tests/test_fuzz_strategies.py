"""The fuzz grammars and strategies: plainest inputs, safety limits that hold for every genome, groups that
keep to their kind, the notation cases are stored in, and shrinking that ends at a readable minimal input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from iec62443_harness.fixtures.fuzz.strategies import (
    GENOME_MAX,
    GROUPS,
    WRITE_FUNCTIONS,
    WRITE_HEAD,
    CanFrame,
    Genome,
    batches,
    can_frames,
    case_grammar,
    case_text,
    console_inputs,
    crc16,
    genomes,
    modbus_pdus,
    modbus_rtu_frames,
    modbus_tcp_frames,
    parse_case,
    ssh_preauth_inputs,
)
from iec62443_harness.fixtures.links.modbus import crc16 as driver_crc16

COILS, REGISTERS = [(100, 199)], [(100, 109), (500, 500)]
MANY = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def test_an_exhausted_genome_reads_zeros_and_picks_the_first_option() -> None:
    g = Genome(b"\x07")
    assert g.byte() == 7 and g.byte() == 0 and g.u16() == 0
    assert Genome(b"").pick("abc") == "a" and Genome(b"\x04").pick("abc") == "b"


@pytest.mark.parametrize(("interface", "plainest"), [
    ("modbus_tcp", "00000000000601030000" "0001"),  # read holding register 0, unit 1
    ("modbus_rtu", "010300000001840a"),
    ("can", "605#4000400000000000"),  # SDO upload of 0x4000 sub 0
    ("console", "68656c700d"),  # "help\r"
])
def test_the_empty_genome_is_the_plainest_valid_input(interface: str, plainest: str) -> None:
    grammar = case_grammar(interface, unit=1, node_id=5)
    assert case_text(grammar(Genome(b""))) == plainest


def _write_span(pdu: bytes) -> tuple[str, int, int] | None:
    """(table, first, last) a complete write PDU addresses, None when its fields are cut short."""
    fc = pdu[0]
    if fc in (5, 6, 22) and len(pdu) >= 3:
        address = int.from_bytes(pdu[1:3], "big")
        return ("coils" if fc == 5 else "registers", address, address)
    if fc in (15, 16) and len(pdu) >= 5:
        address, count = struct.unpack(">HH", pdu[1:5])
        return ("coils" if fc == 15 else "registers", address, address + max(count, 1) - 1)
    if fc == 23 and len(pdu) >= 9:
        address, count = struct.unpack(">HH", pdu[5:9])
        return "registers", address, address + max(count, 1) - 1
    return None


@MANY
@given(genomes(), st.sampled_from(["modbus_tcp", "modbus_rtu"]))
def test_writes_stay_inside_the_writable_ranges(data: bytes, interface: str) -> None:
    """However a write is mangled, its address fields are whole (bytes that follow cannot complete them)
    and inside a writable range."""
    frame = case_grammar(interface, coils=COILS, registers=REGISTERS)(Genome(data))
    pdu = frame[7:] if interface == "modbus_tcp" else frame[1:]
    if not pdu or pdu[0] not in WRITE_FUNCTIONS:
        return
    assert len(pdu) >= WRITE_HEAD[pdu[0]], frame.hex()
    table, first, last = _write_span(pdu)  # type: ignore[misc]
    ranges = COILS if table == "coils" else REGISTERS
    assert any(lo <= first and last <= hi for lo, hi in ranges), (frame.hex(), table, first, last)


@MANY
@given(modbus_pdus())
def test_no_write_and_no_silencing_diagnostic_without_writable_ranges(pdu: bytes) -> None:
    assert pdu[0] not in WRITE_FUNCTIONS
    if pdu[0] == 8 and len(pdu) >= 3:
        assert int.from_bytes(pdu[1:3], "big") not in (0x0001, 0x0004)  # restart, listen-only


@MANY
@given(can_frames(5, ids=[(0x605, 0x605), (0x200, 0x20F)]))
def test_can_frames_go_only_to_allowed_ids_and_never_write_the_communication_profile(frame: CanFrame) -> None:
    assert frame.can_id == 0x605 or 0x200 <= frame.can_id <= 0x20F
    assert len(frame.data) <= 8
    if frame.can_id == 0x605 and len(frame.data) >= 3 and frame.data[0] in (0x2B, 0x2F, 0x27, 0x23, 0x22, 0x21):
        assert not 0x1000 <= int.from_bytes(frame.data[1:3], "little") <= 0x1FFF


@MANY
@given(modbus_rtu_frames(1))
def test_rtu_frames_carry_the_driver_crc_unless_spoiled(frame: bytes) -> None:
    assert crc16(frame[:-2]) == driver_crc16(frame[:-2])


@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_each_group_keeps_to_its_kind(data: st.DataObject) -> None:
    g = lambda group, iface="modbus_tcp": case_grammar(iface, group=group, node_id=5, coils=COILS,  # noqa: E731
                                                       registers=REGISTERS)(Genome(data.draw(genomes())))
    assert g("read")[7] in (1, 2, 3, 4)
    assert g("write")[7] in WRITE_FUNCTIONS
    assert g("function")[7] not in (1, 2, 3, 4, *WRITE_FUNCTIONS)
    frame = g("framing")
    length_right = len(frame) >= 7 and int.from_bytes(frame[4:6], "big") == len(frame) - 6
    well_formed = length_right and frame[2:4] == b"\0\0" and frame[6] == 1 and len(frame) <= 260
    assert not well_formed  # one field of the MBAP is wrong, or the ADU is over Modbus's 260 bytes
    assert len(g("sdo", "can").data) == 8
    assert len(g("length", "can").data) < 8


def test_every_interface_has_groups_with_a_grammar() -> None:
    for interface, groups in GROUPS.items():
        for group in groups:
            case_grammar(interface, group=group, node_id=5, coils=COILS, registers=REGISTERS)(Genome(b"\x01\x02"))
    with pytest.raises(ValueError, match="writable"):
        case_grammar("modbus_rtu", group="write")


@pytest.mark.parametrize(("interface", "case"), [
    ("modbus_tcp", bytes.fromhex("000100000006010300000001")),
    ("can", CanFrame(0x605, bytes.fromhex("40004000"))),
    ("can", CanFrame(0x18FF0005, b"", extended=True)),
])
def test_cases_round_trip_through_their_notation(interface: str, case: bytes | CanFrame) -> None:
    assert parse_case(interface, case_text(case)) == case


@pytest.mark.parametrize("text", ["605", "60#00", "605#" + "00" * 9, "800#00"])
def test_a_bad_can_notation_names_the_expected_shape(text: str) -> None:
    with pytest.raises(ValueError, match="ID#DATA|at most 8"):
        parse_case("can", text)


@MANY
@given(st.one_of(modbus_tcp_frames(1), console_inputs(), ssh_preauth_inputs()))
def test_byte_cases_are_bounded(case: bytes) -> None:
    assert len(case) <= 32 * 1024  # an SSH client that says nothing at all is a case too


def test_a_batch_holds_up_to_its_size_of_whole_genomes() -> None:
    sizes: list[int] = []

    @seed(1)
    @settings(max_examples=50, database=None, phases=[Phase.generate])
    @given(batches(32))
    def check(batch: list[bytes]) -> None:
        assert all(len(genome) == GENOME_MAX for genome in batch)
        sizes.append(len(batch))

    check()
    assert max(sizes) == 32 and sum(sizes) / len(sizes) > 24  # a zero presence byte leaves a case out


def test_shrinking_ends_at_the_plainest_input_that_still_fails() -> None:
    """A failure only a zero quantity in a read of holding registers triggers shrinks to exactly that."""
    grammar = case_grammar("modbus_tcp", group="read")
    found: list[bytes] = []

    @seed(3)
    @settings(max_examples=500, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(batches(16))
    def check(batch: list[bytes]) -> None:
        cases = [grammar(Genome(g)) for g in batch]
        failing = [c for c in cases if c[7:8] == b"\x03" and c[10:12] == b"\0\0" and len(c) == 12]
        if failing:
            found[:] = cases
            raise AssertionError

    with pytest.raises(AssertionError):
        check()
    assert [case.hex() for case in found] == ["000000000006010300000000"]
