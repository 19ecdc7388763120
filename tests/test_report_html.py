"""matrix.html as a browser shows it: headless Chromium (Debian's `chromium`, tests/apt-packages.txt) lays the
page out at 800 and 1400 px with every evidence fold open; nothing may run past the page edge and every row id
must be visible whole. Printed, the folded evidence must be on paper. The probe is a script added to a copy of
the page, whose findings `--dump-dom` returns: no DevTools client is needed."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from iec62443_harness.report import write_reports

DATA = Path(__file__).resolve().parent / "data" / "runs"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install chromium "
                                "(./run tests installs it as root)")

# What a long test id, an unbroken device reply and a long compensation look like in the worst case.
LONG_TEST = ("conformance/test_edr_3_10_support_for_updates_with_a_long_module_name.py::"
             "test_update_images_are_signed_and_checked_before_they_are_applied"
             "[sim-plc-ssh-firmware_image_with_a_long_parameter_id_0123456789abcdef0123456789abcdef]")
LONG_OUTCOMES = [
    {"type": "outcome", "test": LONG_TEST, "rows": ["EDR/HDR/NDR 3.10 RE(1)", "CR 2.1"], "verdict": "fail",
     "reason": "the device accepted an image whose signature was " + "0f" * 120 + "; " + "it was applied " * 30,
     "interface": "ssh", "evidence": ["+   0.100s ssh: sent image " + "ab" * 400,
                                      "+   0.200s ssh: reply " + "a-long-word-without-spaces-" * 20],
     "checklist": [], "duration_s": 1.5, "ended": "2026-01-01T00:00:01.000Z"},
]

PROBE = """<script>
for (const d of document.querySelectorAll("details")) d.open = true;
const vw = document.documentElement.clientWidth;
const out = {viewport: vw, scrollWidth: document.documentElement.scrollWidth, cut: [], offPage: [], ids: 0};
for (const td of document.querySelectorAll("td.id")) {
  out.ids += 1;
  const r = td.getBoundingClientRect();
  if (td.scrollWidth > td.clientWidth + 1) out.cut.push(td.textContent);
  if (r.right > vw + 1 || r.left < -1) out.offPage.push(td.textContent);
}
for (const el of document.body.querySelectorAll("*")) {
  const r = el.getBoundingClientRect();
  if (r.width && r.right > vw + 1 && out.offPage.length < 12) out.offPage.push(el.tagName + "." + el.className);
}
const pre = document.createElement("pre");
pre.id = "probe-result";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def _chromium(args: list[str], profile: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", params=["sim-plc-sl2", "sim-plc-insecure"])
def page(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp(request.param)
    lines = (DATA / f"{request.param}.jsonl").read_text().splitlines()
    extra = [json.dumps(o) for o in LONG_OUTCOMES]
    (run_dir / "results.jsonl").write_text("\n".join([*lines[:-1], *extra, lines[-1]]) + "\n")
    write_reports(run_dir)
    return run_dir / "matrix.html"


def _probe(page: Path, width: int, tmp_path: Path) -> dict[str, Any]:
    probed = tmp_path / f"probe-{width}.html"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    done = _chromium([f"--window-size={width},1000", "--dump-dom", probed.as_uri()], tmp_path / f"profile-{width}")
    found = re.search(r'<pre id="probe-result">(.*?)</pre>', done.stdout, re.S)
    assert found, f"chromium gave no probe result (exit {done.returncode}): {done.stderr[-1500:]}"
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.parametrize("width", [800, 1400])
def test_nothing_runs_past_the_page_edge(page: Path, width: int, tmp_path: Path) -> None:
    found = _probe(page, width, tmp_path)
    assert found["viewport"] <= width and found["ids"] == 96, found  # every catalogue row
    assert found["scrollWidth"] <= found["viewport"], f"sideways overflow at {width} px: {found}"
    assert found["cut"] == [], f"row ids cut at {width} px: {found['cut']}"
    assert found["offPage"] == [], f"past the right edge at {width} px: {found['offPage']}"


def test_printing_shows_the_folded_evidence(page: Path, tmp_path: Path) -> None:
    if shutil.which("pdftotext") is None:
        pytest.skip("needs Debian's poppler-utils (pdftotext): apt-get install poppler-utils")
    pdf = tmp_path / "matrix.pdf"
    done = _chromium(["--no-pdf-header-footer", f"--print-to-pdf={pdf}", page.as_uri()], tmp_path / "profile-pdf",
                     timeout=120)
    assert pdf.is_file(), done.stderr[-1500:]
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, timeout=60).stdout
    flat = " ".join(text.split())
    assert "evidence and checklist" not in flat  # the fold's label is not printed...
    assert "observed over the declared interfaces" in flat or "Checklist for the reviewer" in flat  # ...its content is
    assert "ssh: sent image abab" in flat.replace("- ", "")
