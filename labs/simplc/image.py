"""The process image: coils, discrete inputs, holding and input registers, shared by every interface.

One `ProcessImage` is the single source of truth. The control task, Modbus TCP, Modbus RTU, the CAN
service and the shell all read and write this object. Addresses start at 0 (the PDU address, as on the
wire), `SIZE` entries per table; bits are stored as 0/1.

It also serves as the datastore pymodbus's request PDUs execute against (`async_getValues` /
`async_setValues`, the interface of pymodbus 3.16's server context). pymodbus's own contexts would not
do: in 3.16 every server builds a private copy of a `ModbusServerContext`'s registers (SimCore), and
`ModbusSequentialDataBlock` shifts addresses by one; this object is shared as is, with no offset.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pymodbus.constants import ExcCodes

SIZE = 1000
TABLES = ("co", "di", "hr", "ir")
BIT_TABLES = ("co", "di")
# Modbus function code -> the table it reads or writes
FC_TABLE = {1: "co", 5: "co", 15: "co", 2: "di", 3: "hr", 6: "hr", 16: "hr", 22: "hr", 23: "hr", 4: "ir"}


class ImageError(IndexError):
    """An access outside the image, or to a table that does not exist."""


class ProcessImage:
    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._tables: dict[str, list[int]] = {t: [0] * size for t in TABLES}
        self._lock = threading.Lock()

    def _check(self, table: str, address: int, count: int) -> list[int]:
        if table not in self._tables:
            raise ImageError(f"no table {table!r}: use one of {', '.join(TABLES)}")
        if count < 1 or address < 0 or address + count > self.size:
            raise ImageError(f"{table} {address}..{address + count - 1} is outside the image (0..{self.size - 1})")
        return self._tables[table]

    def read(self, table: str, address: int, count: int = 1) -> list[int]:
        with self._lock:
            return self._check(table, address, count)[address:address + count]

    def write(self, table: str, address: int, values: Sequence[int]) -> None:
        bits = table in BIT_TABLES
        clean = [int(bool(v)) if bits else int(v) for v in values]
        if not all(0 <= v <= 0xFFFF for v in clean):
            raise ValueError(f"{table} values must be 0..65535, not {values!r}")
        with self._lock:
            self._check(table, address, len(clean))[address:address + len(clean)] = clean

    # --- the datastore interface pymodbus PDUs call from `datastore_update`

    def device_ids(self) -> list[int]:
        return [1]

    async def async_getValues(self, device_id: int, func_code: int, address: int,  # pymodbus API name
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            values = self.read(table, address, count)
        except ImageError:
            return ExcCodes.ILLEGAL_ADDRESS
        return [bool(v) for v in values] if table in BIT_TABLES else values

    async def async_setValues(self, device_id: int, func_code: int, address: int,  # pymodbus API name
                              values: Sequence[int] | Sequence[bool]) -> ExcCodes | None:
        table = FC_TABLE.get(func_code)
        if table is None or table not in ("co", "hr"):
            return ExcCodes.ILLEGAL_FUNCTION
        try:
            self.write(table, address, [int(v) for v in values])
        except ImageError:
            return ExcCodes.ILLEGAL_ADDRESS
        return None
