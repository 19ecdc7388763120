"""CR 3.5 Input validation (SL 1-4).

Judges CR 3.5 over modbus_tcp, modbus_rtu, can, console (at its login prompt) and ssh (before
authentication): a seeded hypothesis campaign per interface (`fixtures.fuzz.campaign`) sends malformed,
boundary and unknown inputs within the target file's budget (`safety.fuzz_budget[interface]`; overridden by
--fuzz-examples / --fuzz-seconds; repeat a run with --seed), at most `safety.rates` / `max_rate_per_s`, and
only with `safety.allow_fuzzing`. The device must keep answering every input (a fresh connection after a
rejected one counts) and keep its essential function, watched over another channel the whole time. Each
failure is shrunk to a minimal input, verified on a restored device and stored with a one-line replay
command.
Not exercised: inputs outside the declared interfaces (configuration files, project downloads, firmware
images, web pages): a lab reviews those against the vendor's input specifications.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.fuzz.campaign import campaign_for

FUZZED = ["modbus_tcp", "modbus_rtu", "can", "console", "ssh"]


@pytest.mark.judges("CR 3.5", over=FUZZED)
def test_inputs_are_validated_under_fuzzing(target, interface, evidence, request):
    target.require(interface)
    result = campaign_for(request, target, interface, evidence).run()
    evidence.add("check", f"{result.cases} cases at {result.rate:.0f} cases/s, seed {result.seed}, essential "
                          f"function watched over {result.watched or 'nothing (none declared)'}, "
                          f"{result.recoveries} restorations of the device")
    assert not result.findings, result.summary()

