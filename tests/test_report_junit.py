"""pytest's own --junitxml and the harness's junit.xml tell one story: every test case carries its requirement ids
(and interface, and verdict) as properties, and a compensated or manual test reads the same in both."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tests.test_plugin import DEVICELESS, SUITE, run

COUNTERMEASURE = """\
countermeasures:
  - rows: ["CR 1.1"]
    interfaces: [modbus_tcp]
    justification: "the Modbus port is reachable from the cell zone only"
"""
COMPENSATED = '''
@pytest.mark.judges("CR 1.1", over=["modbus_tcp"])
def test_no_auth(target, interface):
    assert False, "Modbus has no authentication"
'''


def _cases(path: Path) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in ET.parse(path).getroot().iter("testcase")}


def _props(case: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(p.get("name"), p.get("value")) for p in case.findall("./properties/property")]


def test_pytest_junitxml_agrees_with_the_harness(tmp_path: Path) -> None:
    (tmp_path / "bench.yaml").write_text(DEVICELESS + COUNTERMEASURE)
    (tmp_path / "test_suite.py").write_text(SUITE + COMPENSATED)
    proc = run(tmp_path, "--target", "bench.yaml", "--run-id", "j", "--junitxml", "pytest.xml", "test_suite.py")
    assert proc.returncode == 1, proc.stdout
    ours = _cases(tmp_path / "reports" / "bench" / "j" / "junit.xml")
    theirs = _cases(tmp_path / "pytest.xml")
    assert set(ours) == set(theirs) and len(ours) == 8
    for key, case in ours.items():
        assert _props(theirs[key]) == _props(case), key
    compensated = ("test_suite", "test_no_auth[bench-modbus_tcp]")
    assert _props(ours[compensated]) == [("requirement", "CR 1.1"), ("interface", "modbus_tcp"),
                                         ("verdict", "compensated")]
    for key, verdict in ((compensated, "compensated"), (("test_suite", "test_manual[bench]"), "manual"),
                         (("test_suite", "test_na[bench]"), "n/a"), (("test_suite", "test_not_allowed[bench]"),
                                                                     "not-run")):
        mine, pytests = ours[key].find("skipped"), theirs[key].find("skipped")
        assert mine is not None and pytests is not None, key
        assert pytests.get("message") == mine.get("message"), key
        assert mine.get("message").startswith(f"{verdict}: ")
    assert "compensating countermeasure: the Modbus port" in ours[compensated].find("skipped").get("message")
    assert ours[("test_suite", "test_failing[bench]")].find("failure") is not None
    assert theirs[("test_suite", "test_failing[bench]")].find("failure") is not None
