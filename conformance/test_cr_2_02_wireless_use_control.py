"""CR 2.2 Wireless use control (SL 1-4).

Judges CR 2.2. A component without wireless interfaces (`wireless: false` in the target file) has nothing
to control: n/a on the target file's word, so manual until a human confirms there is none. With wireless
interfaces the row is manual: the harness sends nothing over the air (it only ever talks to loopback), so a
human follows the checklist.
"""

from __future__ import annotations

import pytest
from iec62443_harness.fixtures.outcomes import manual, not_applicable


@pytest.mark.judges("CR 2.2")
def test_wireless_use_control(target):
    if not target.spec.wireless:
        not_applicable(f"target {target.name} declares no wireless interface (wireless: false)",
                       ["Confirm the component has no wireless interface (Wi-Fi, Bluetooth, cellular, "
                        "ISA100/WirelessHART, NFC): its target file says wireless: false."])
    manual("the harness does not exercise wireless interfaces; a human checks them", [
        "List every wireless interface of the component (Wi-Fi, Bluetooth, cellular, ISA100/WirelessHART, NFC).",
        "Confirm each can be disabled, and is disabled when not needed (configuration, factory state).",
        "Confirm a wireless client must be identified and authorized before it may use the component.",
        "Confirm use of the wireless interfaces is restricted per the declared roles and is audited.",
        "Confirm unauthorized wireless access attempts are refused and recorded."])
