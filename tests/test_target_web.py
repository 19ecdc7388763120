"""The target model's web interfaces: strict, with one clear line for each mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from iec62443_harness.errors import HarnessError
from iec62443_harness.target import load_target

HEAD = 'identity: {vendor: T, model: M, firmware: "1"}\ncomponent_type: embedded_device\nsecurity_level: 2\n'
LOGIN = '{success_marker: "ok", failure_marker: "bad"}'


def _load(tmp_path: Path, interfaces: str, extra: str = "") -> object:
    path = tmp_path / "web.yaml"
    path.write_text(HEAD + f"interfaces:\n{interfaces}\n{extra}")
    return load_target(path)


def test_a_full_https_record_loads(tmp_path: Path) -> None:
    spec = _load(tmp_path, f"""  https:
    base_url: https://127.0.0.1:8443
    certificate_sha256: ["{'ab:' * 31}ab", "{'CD' * 32}"]
    session_cookie: SID
    login: {{success_marker: "ok", failure_marker: "bad", logout: {{path: /logout}}, session_probe: /me,
             session_probe_marker: user}}
    csrf: {{source: cookie, name: XSRF-TOKEN, send_header: X-XSRF-TOKEN}}
    protected_action: {{path: /ntp, method: PUT, encoding: json, fields: {{server: a}}, refused_status: [403, 419]}}
  http: {{base_url: "http://127.0.0.1:8080"}}""", "safety: {rates: {https: 5}}\n")
    assert spec.interfaces.declared() == ["https", "http"]  # type: ignore[attr-defined]
    assert spec.safety.rate_for("https") == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize(("interfaces", "said"), [
    ("  https: {base_url: 'http://127.0.0.1'}", "takes an https:// URL"),
    ("  http: {base_url: 'https://127.0.0.1'}", "takes an http:// URL"),
    ("  https: {base_url: 'https://127.0.0.1/path'}", "base_url"),
    ("  https: {base_url: 'https://127.0.0.1', certificate_sha256: 'abc'}", "no SHA-256 fingerprint"),
    ("  https: {base_url: 'https://h', login: {success_marker: ok, failure_marker: bad, session_probe: /me}}",
     "session_probe and session_probe_marker go together"),
    (f"  https: {{base_url: 'https://h', login: {LOGIN}, csrf: {{source: form, name: t}}}}", "needs `page`"),
    ("  https: {base_url: 'https://h', login: {success_marker: ok}}", "failure_marker"),
    (f"  https: {{base_url: 'https://h', login: {LOGIN}, sesion_cookie: SID}}", "unknown key"),
    ("  https: {session_cookie: SID}", "interfaces.https needs base_url"),
    ("  https: {base_url: 'https://h', login: {success_marker: '(', failure_marker: bad}}", "regular expression"),
])
def test_mistakes_are_one_line(tmp_path: Path, interfaces: str, said: str) -> None:
    with pytest.raises(HarnessError) as caught:
        _load(tmp_path, interfaces)
    assert said in str(caught.value) and "\n" not in str(caught.value), str(caught.value)
