"""Target files: the strict model of `targets/NAME.yaml` and how one is found and loaded.

A target file says where the device is (interfaces), what it claims (component type, SL-T, policies)
and what the harness may do to it (safety). Unknown keys are rejected so that a typo never silently
turns a check off. Credentials are only ever `${ENV_VAR}` references, resolved at run time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from iec62443_harness.errors import HarnessError
from iec62443_harness.evidence import redact
from iec62443_harness.wordlists import published_passwords
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{value!r} is not a valid regular expression ({exc})") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


class ComponentType(StrEnum):
    """The four 62443-4-2 component types."""

    software_application = "software_application"
    embedded_device = "embedded_device"
    host_device = "host_device"
    network_device = "network_device"

    @property
    def code(self) -> str:
        """The prefix the catalogue uses for this type's rows: SAR, EDR, HDR, NDR."""
        return {"software_application": "SAR", "embedded_device": "EDR", "host_device": "HDR",
                "network_device": "NDR"}[self.value]


class Identity(Strict):
    vendor: str
    model: str
    firmware: str
    serial_number: str | None = None


# --- interfaces: where each one is. Address fields may be left out only when an emulator supplies them.


class Timeouts(Strict):
    connect_s: float = Field(2.0, gt=0, le=60)
    reply_s: float = Field(1.0, gt=0, le=60)


class ModbusTcp(Strict):
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    timeouts: Timeouts = Timeouts()


class ModbusRtu(Strict):
    url: str | None = Field(None, description="any pyserial URL: /dev/ttyUSB0, socket://h:p, rfc2217://h:p")
    baudrate: int = 19200
    parity: Literal["N", "E", "O"] = "E"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(1, ge=1, le=247)
    timeouts: Timeouts = Timeouts()


class Can(Strict):
    interface: str = Field(description="python-can interface: socketcan, pcan, kvaser, slcan, ...")
    channel: str | None = None
    bitrate: int = 500_000
    node_id: int = Field(1, ge=1, le=127, description="CANopen-style node id of the device")
    sdo_read_index: int = Field(0x1000, ge=0, le=0xFFFF, description="an object an SDO upload may read "
                                "(0x1000, device type, exists on every CANopen device)")
    sdo_write_index: int | None = Field(None, ge=0, le=0xFFFF, description="a 16-bit object the harness may "
                                        "write (only with safety.allow_writes), for CR 2.1 RE(1)")
    options: dict[str, Any] = Field(default_factory=dict, description="extra python-can Bus kwargs")
    timeouts: Timeouts = Timeouts()


class Ssh(Strict):
    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    host_key_fingerprint: str | list[str] | None = Field(
        None, description="SHA256:... (or a list: one per host key the server has); pinned when given: a mismatch "
        "stops every test over ssh before a credential, a fuzz case or a storm is sent")
    timeouts: Timeouts = Timeouts()


class Console(Strict):
    url: str | None = Field(None, description="pyserial URL of the serial console")
    baudrate: int = 115200
    login_prompt: Regex = Field("login:", description="regular expression")
    password_prompt: Regex = Field("[Pp]assword:", description="regular expression")
    shell_prompt: Regex = Field(r"[$#>] ?$", description="regular expression matched at the end of output")
    timeouts: Timeouts = Timeouts(connect_s=2.0, reply_s=2.0)


# --- the web-management interface (https, or plain http): its login form or API described as data


WebPath = Annotated[str, Field(pattern=r"^/", description="a path on the device, starting with /")]
_SHA256_HEX = r"^(?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$"


class WebRequest(Strict):
    """One request the harness may send, e.g. a harmless setting written back with its own value."""

    path: WebPath
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    encoding: Literal["form", "json"] = "form"
    fields: dict[str, str | int | float | bool] = Field(default_factory=dict, description="body fields (query "
                                                        "parameters for GET)")
    done_marker: Regex | None = Field(None, description="regular expression in a 2xx answer that says it was done; "
                                      "without it any 2xx counts as done")
    refused_status: list[int] = Field([401, 403], description="statuses that mean no (CSRF failures are often "
                                      "400, 419 or 422: add them when the device uses them)")
    refused_marker: Regex | None = Field(None, description="regular expression of a refusal in the body")


class WebLogin(Strict):
    """How a user logs in: a form (or a JSON API) at `path`, and what the answers say."""

    path: WebPath = Field("/login", description="the login page (GET) and where the form is sent")
    action: WebPath | None = Field(None, description="where the form is sent when it is not `path`")
    method: Literal["POST", "GET"] = "POST"
    encoding: Literal["form", "json"] = "form"
    username_field: str = "username"
    password_field: str = "password"
    extra_fields: dict[str, str] = Field(default_factory=dict, description="sent with every login, e.g. a realm")
    success_marker: Regex = Field(description="regular expression in the answer (after same-origin redirects) "
                                  "to a login that was accepted")
    failure_marker: Regex = Field(description="regular expression in the answer to a login that was refused; an "
                                  "answer matching neither marker decides nothing (ERROR)")
    lockout_marker: Regex | None = Field(None, description="regular expression in the answer once the account "
                                         "is locked")
    logout: WebRequest | None = Field(None, description="the request that ends the session")
    session_probe: WebPath | None = Field(None, description="a page only a logged-in user is shown (GET)")
    session_probe_marker: Regex | None = Field(None, description="regular expression on that page while logged in")

    @model_validator(mode="after")
    def _probe(self) -> WebLogin:
        if (self.session_probe is None) != (self.session_probe_marker is None):
            raise ValueError("session_probe and session_probe_marker go together: the page, and what shows on "
                             "it while logged in")
        return self


class Csrf(Strict):
    """Where the device's anti-CSRF token comes from and how a request carries it back."""

    source: Literal["form", "cookie", "header"] = Field(description="form: <input name=NAME value=...> (or <meta "
                                                        "name=NAME content=...>) on `page`; cookie: a cookie NAME; "
                                                        "header: a response header NAME of the login")
    name: str
    page: WebPath | None = Field(None, description="the page that carries the token (form source)")
    send_header: str | None = Field(None, description="send the token in this request header instead of a body "
                                    "field named `name`")

    @model_validator(mode="after")
    def _page(self) -> Csrf:
        if self.source == "form" and self.page is None:
            raise ValueError("a token read from a form needs `page`: the page that carries it")
        return self


class Web(Strict):
    base_url: str | None = Field(None, pattern=r"^https?://[^/?#]+$", description="scheme, host and port only, "
                                 "e.g. https://192.0.2.10:443")
    login: WebLogin | None = Field(None, description="the login form or API; without it the suites that need a "
                                   "login are manual")
    session_cookie: str | None = Field(None, description="the name of the cookie that carries the session")
    csrf: Csrf | None = None
    protected_action: WebRequest | None = Field(
        None, description="a state-changing request an administrator may send and a viewer must be refused "
        "(CR 2.1); CR 3.8 sends it without its CSRF token from a foreign origin. Choose one that is harmless to "
        "repeat (writing a setting back with its current value): it is sent only with safety.allow_config_changes")
    session_samples: int = Field(64, ge=16, le=1024, description="logins made to judge session identifiers")
    timeouts: Timeouts = Timeouts(connect_s=3.0, reply_s=5.0)


class Https(Web):
    certificate_sha256: str | list[str] | None = Field(
        None, description="SHA-256 fingerprint of the certificate the device presents (hex, colons optional), or a "
        "list; pinned when given: a mismatch stops every https test before a credential is sent")
    ca_file: str | None = Field(None, description="PEM file of the CA that issued the device's certificate: the "
                                "chain and the host name are then verified on every connection")

    @field_validator("certificate_sha256")
    @classmethod
    def _fingerprints(cls, value: str | list[str] | None) -> str | list[str] | None:
        for fp in [value] if isinstance(value, str) else value or []:
            if not re.match(_SHA256_HEX, fp.strip()):
                raise ValueError(f"{fp!r} is no SHA-256 fingerprint: 64 hex digits, colons optional (openssl x509 "
                                 "-noout -fingerprint -sha256)")
        return value

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("https://"):
            raise ValueError(f"{value!r}: interfaces.https takes an https:// URL (plain http goes under http)")
        return value


class Http(Web):
    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("http://"):
            raise ValueError(f"{value!r}: interfaces.http takes an http:// URL (TLS goes under https)")
        return value


class Interfaces(Strict):
    modbus_tcp: ModbusTcp | None = None
    modbus_rtu: ModbusRtu | None = None
    can: Can | None = None
    ssh: Ssh | None = None
    console: Console | None = None
    https: Https | None = None
    http: Http | None = None

    def declared(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


INTERFACE_NAMES = tuple(Interfaces.model_fields)
_ADDRESS_FIELDS = {"modbus_tcp": ("host", "port"), "modbus_rtu": ("url",), "can": ("channel",),
                   "ssh": ("host", "port"), "console": ("url",), "https": ("base_url",), "http": ("base_url",)}


# --- accounts and credentials


class Secret(str):
    """A resolved credential. Its repr never shows the value, and reports redact it wherever it appears."""

    def __repr__(self) -> str:
        return "Secret('***')"


EnvRef = Annotated[str, Field(pattern=_ENV_REF.pattern, description="${ENV_VAR}: never a literal secret")]


Purpose = Literal["normal", "lockout_test", "password_test"]


class Account(Strict):
    username: str
    password: EnvRef | None = None
    private_key_file: EnvRef | None = Field(None, description="${ENV_VAR} holding the path of a key file")
    role: str
    purpose: Purpose | list[Purpose] = Field(
        "normal", description="dedicated accounts the destructive credential tests may lock or change; a list "
        "when one account must serve several (a device with a single account: [normal, lockout_test] lets the "
        "lockout tests lock the administrator, only where it unlocks by itself in time, never where only an "
        "administrator could unlock it)")

    @property
    def purposes(self) -> tuple[str, ...]:
        return (self.purpose,) if isinstance(self.purpose, str) else tuple(self.purpose)


# --- what the device claims: essential function, policies, services


class CoilToggle(Strict):
    kind: Literal["coil"] = "coil"
    address: int = Field(ge=0, le=65535)
    high_s: float = Field(gt=0)
    low_s: float = Field(gt=0)


class RegisterCounter(Strict):
    kind: Literal["counter"] = "counter"
    address: int = Field(ge=0, le=65535)
    period_s: float = Field(gt=0, description="one increment per period")


class CanHeartbeat(Strict):
    kind: Literal["can_heartbeat"] = "can_heartbeat"
    can_id: int = Field(ge=0, le=0x1FFFFFFF)
    period_s: float = Field(gt=0)


class ConsoleLine(Strict):
    kind: Literal["console_line"] = "console_line"
    pattern: Regex
    period_s: float = Field(gt=0)


class CommandOutput(Strict):
    """A value in a command's output (ssh) that changes once a period, e.g. a cycle counter or an uptime."""

    kind: Literal["command"] = "command"
    command: str = Field(min_length=1, description="run over ssh as `account` each sample; changes nothing")
    pattern: Regex = Field(description="regular expression whose first group (or whole match) is the value")
    period_s: float = Field(gt=0, description="the value changes once per period")


Signal = Annotated[CoilToggle | RegisterCounter | CanHeartbeat | ConsoleLine | CommandOutput,
                   Field(discriminator="kind")]
WatchVia = Literal["modbus_tcp", "modbus_rtu", "can", "console", "ssh"]


class ModbusEndpoint(Strict):
    """Another Modbus TCP address of the device (a second port, a second network card, a gateway in front of
    it): watching there, the monitor does not share the attacked interface's connection or rate cap."""

    host: str
    port: int = Field(502, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    timeouts: Timeouts = Timeouts()


class WatchedSignal(Strict):
    """One more way to see the essential function: a signal over an interface (or a second Modbus endpoint)."""

    via: WatchVia
    signal: Signal
    endpoint: ModbusEndpoint | None = Field(None, description="modbus_tcp only: read here instead of "
                                            "interfaces.modbus_tcp")
    account: str | None = Field(None, description="ssh only: the key of the account (in accounts) that runs the "
                                "command; an ordinary one will do")
    jitter_s: float | None = Field(None, gt=0, description="default: the essential function's")
    max_gap_s: float | None = Field(None, gt=0, description="default: the essential function's")


class EssentialFunction(Strict):
    description: str
    via: list[Literal["modbus_tcp", "modbus_rtu", "can", "console"]] = Field(
        min_length=1, description="channels the monitor may watch `signal` over, by preference; it takes the "
        "first one that is not under attack")
    signal: Signal
    also: list[WatchedSignal] = Field(default_factory=list, description="more signals, each over its own channel "
                                      "(a console or ssh command's output, a CAN heartbeat, a second Modbus "
                                      "endpoint), tried after `via` when every one of those is under attack")
    jitter_s: float = Field(0.1, gt=0, description="tolerated deviation of each transition")
    min_within_jitter: float = Field(0.95, gt=0, le=1)
    max_gap_s: float = Field(gt=0, description="longest tolerated time without any expected transition")

    def watched(self) -> list[WatchedSignal]:
        """Every way to see the function, by preference: `signal` over each of `via`, then `also`."""
        own = [WatchedSignal(via=v, signal=self.signal) for v in self.via]
        return [*own, *self.also]

    def seen_by(self, watched: WatchedSignal) -> EssentialFunction:
        """The function as one watched signal shows it: that signal, with its own timing when it declares one."""
        return self.model_copy(update={"signal": watched.signal, "max_gap_s": watched.max_gap_s or self.max_gap_s,
                                       "jitter_s": watched.jitter_s or self.jitter_s, "also": []})


class LockoutPolicy(Strict):
    threshold: int = Field(ge=1, description="failed attempts that lock the account")
    unlock_after_s: float | None = Field(None, gt=0, description="None: only an administrator unlocks")
    admin_unlock: str | None = Field(None, description="command key in shell.commands that unlocks")


class PasswordPolicy(Strict):
    min_length: int = Field(8, ge=1)
    require_classes: int = Field(1, ge=1, le=4, description="of lower, upper, digit, symbol")
    history: int = Field(0, ge=0, description="previous passwords that may not be reused")
    max_lifetime_days: int | None = None


class SessionPolicy(Strict):
    idle_timeout_s: float | None = Field(None, gt=0)
    max_concurrent: int | None = Field(None, ge=1)


class Shell(Strict):
    """How the management shell (SSH and console) is driven: one template per operation."""

    commands: dict[str, str] = Field(default_factory=dict, description="operation -> command template")
    denied_pattern: Regex = Field("permission denied", description="regular expression of a refusal")


class Policies(Strict):
    lockout: LockoutPolicy | None = None
    password: PasswordPolicy | None = None
    session: SessionPolicy = SessionPolicy()
    banner: str | None = Field(None, description="notice expected before authentication (CR 1.12)")
    roles: dict[str, list[str]] = Field(default_factory=dict, description="role -> operations it may do")
    administrator_role: str = Field("admin", description="the role that may do everything (adds users, unlocks "
                                    "accounts, ends sessions): the suites act as an account with it for set-up")
    forced_initial_password_change: bool = False
    multifactor: bool = False
    default_credentials: list[KnownCredential] = Field(
        default_factory=list, description="the vendor's own published defaults, added to the shipped list")


class KnownCredential(Strict):
    """A published factory default (not a secret): tried against every interface by CR 1.5."""

    username: str
    password: str


class Service(Strict):
    name: str
    interface: str | None = Field(None, description="the interface that provides it, when it is one (its port "
                                  "is then the interface's own, on the interface's host)")
    port: int | None = Field(None, ge=1, le=65535, description="open on every address the device has")
    protocol: Literal["tcp", "udp", "can"] = "tcp"
    can_ids: list[tuple[int, int]] = Field(default_factory=list, description="protocol can: [first, last] "
                                           "identifiers the device sends")


# The UDP ports CR 7.7 probes, each with a request of its protocol: SNMP, Modbus, IPMI/RMCP, SSDP, mDNS,
# DNP3, EtherNet/IP, BACnet (fixtures/scan.py holds the requests).
COMMON_UDP_PORTS = (161, 502, 623, 1900, 5353, 20000, 44818, 47808)


class Scan(Strict):
    """How CR 7.7 looks for open services; paced by safety.rates.scan (or max_rate_per_s)."""

    tcp_ports: tuple[int, int] = Field((1, 65535), description="[first, last] ports of the TCP connect scan")
    udp_ports: list[int] = Field(default_factory=lambda: list(COMMON_UDP_PORTS), description="UDP ports probed "
                                 "with a request of their protocol (those without one get an empty datagram)")
    timeout_s: float = Field(1.0, gt=0, le=30, description="wait for a SYN-ACK, a UDP answer or a banner")
    in_flight: int = Field(256, ge=1, le=4096, description="TCP connects outstanding at once")
    can_listen_s: float = Field(5.0, gt=0, le=300, description="how long to note the CAN identifiers the device "
                                "sends (longer than its slowest periodic message)")


class Network(Strict):
    """A network the device is attached to (CR 5.1 segmentation, CR 7.7 scans each address)."""

    address: str = Field(description="the device's own address on this network")
    namespace: str | None = Field(None, description="the network namespace the harness reaches it from "
                                  "(None: the harness host's own); an emulator fills it in")
    peer: str | None = Field(None, description="an address of the harness on this network, routed through the "
                             "device to the others: CR 5.1 sends there from another network and listens here")


# --- what the harness may do


AddressRange = tuple[int, int]


# What each writable table's addresses may be: a Modbus address is 16 bits, a CAN id at most 29 (extended).
_WRITABLE_LIMITS = {"coils": (0xFFFF, "a coil address is 0-65535"),
                    "holding_registers": (0xFFFF, "a holding register address is 0-65535"),
                    "can_ids": (0x1FFFFFFF, "a CAN id is 0-0x1FFFFFFF (536870911, 29-bit extended)")}


class Writable(Strict):
    """[first, last] ranges the harness may write, both ends included; checked here so that a range no device
    can have never reaches a driver."""

    coils: list[AddressRange] = Field(default_factory=list)
    holding_registers: list[AddressRange] = Field(default_factory=list)
    can_ids: list[AddressRange] = Field(default_factory=list)

    @field_validator("coils", "holding_registers", "can_ids")
    @classmethod
    def _in_range(cls, ranges: list[AddressRange], info: ValidationInfo) -> list[AddressRange]:
        top, what = _WRITABLE_LIMITS[info.field_name or ""]
        for lo, hi in ranges:
            if not (0 <= lo <= top and 0 <= hi <= top):
                raise ValueError(f"range [{lo}, {hi}] is out of bounds: {what}")
            if lo > hi:
                raise ValueError(f"range [{lo}, {hi}] is reversed: write it as [{hi}, {lo}]")
        return ranges


OutputRange = tuple[int, int, int]  # first address, last address, the value each output takes


class SafeState(Strict):
    """CR 3.6: what the outputs do on their own once no master has talked to the device for `after_s`."""
    after_s: float = Field(gt=0, le=60, description="the device's communication-loss timeout")
    coils: list[OutputRange] = Field(default_factory=list, description="[first, last, 0|1]")
    holding_registers: list[OutputRange] = Field(default_factory=list, description="[first, last, value]")

    @model_validator(mode="after")
    def _sane(self) -> SafeState:
        if not self.coils and not self.holding_registers:
            raise ValueError("safe_state names no output: give coils or holding_registers as [first, last, value]")
        for kind, ranges, top in (("coils", self.coils, 1), ("holding_registers", self.holding_registers, 65535)):
            for lo, hi, value in ranges:
                if not 0 <= lo <= hi <= 65535:
                    raise ValueError(f"safe_state.{kind} [{lo}, {hi}, {value}]: addresses must be 0 <= first <= "
                                     "last <= 65535")
                if not 0 <= value <= top:
                    raise ValueError(f"safe_state.{kind} [{lo}, {hi}, {value}]: the value must be 0..{top}")
        return self


class Budget(Strict):
    examples: int = Field(2000, ge=1)
    seconds: float = Field(30.0, gt=0, description="time spent fuzzing, restorations after known failures included")
    shrink_seconds: float | None = Field(None, gt=0, description="time the whole campaign may spend bringing its "
                                         "findings down to minimal, verified inputs (default: twice `seconds`, at "
                                         "least 15 s); a finding left when it is spent is reported as found")


class Storms(Strict):
    """CR 7.1's storms: how long each load level is held, and how the rate ramps up to the cap."""

    step_s: float | None = Field(None, gt=0, le=600, description="each rate is held this long; default: `periods` "
                                 "periods of the essential function's signal (a 1 s on / 2 s off coil: 3 s a period), "
                                 "at least MIN_STEP_S; an emulated target may declare less to keep CI short")
    periods: float = Field(3.0, gt=0, le=100, description="periods of the signal each rate is held by default: "
                           "enough for the monitor to see an effect that builds up")
    ramp_factor: float = Field(8.0, gt=1, description="each rate of a ramp is this many times the one before")


class Safety(Strict):
    allow_writes: bool = False  # process-image writes, inside `writable`
    allow_fuzzing: bool = False
    allow_floods: bool = False
    allow_config_changes: bool = Field(False, description="accounts, passwords, settings and sessions may be "
                                       "changed through the management shell (and are restored)")
    allow_lifecycle: bool = Field(False, description="firmware and code may be uploaded, applied and the device "
                                  "restarted; backups made and restored; the device purged (and restored)")
    writable: Writable = Writable()
    max_rate_per_s: float = Field(50.0, gt=0, description="cap on requests per second, per interface")
    rates: dict[str, float] = Field(default_factory=dict, description="per-interface override of the cap")
    fuzz_budget: dict[str, Budget] = Field(default_factory=dict, description="per-interface fuzz budget")
    storms: Storms = Storms()

    @field_validator("rates", "fuzz_budget")
    @classmethod
    def _known_interfaces(cls, value: dict, info: ValidationInfo) -> dict:
        # `scan` has a rate of its own (CR 7.7 port scans): a lab scans fast without raising the request cap
        allowed = (*INTERFACE_NAMES, "scan") if info.field_name == "rates" else INTERFACE_NAMES
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an interface; use one of {', '.join(allowed)}")
        return value

    def rate_for(self, interface: str) -> float:
        return self.rates.get(interface, self.max_rate_per_s)


class Countermeasure(Strict):
    rows: list[str] = Field(min_length=1, description="catalogue ids it answers, e.g. 'CR 1.1'")
    interfaces: list[str] = Field(min_length=1, description="the interfaces it covers; named one by one, so a "
                                  "countermeasure for Modbus never excuses a flaw found over ssh")
    justification: str = Field(min_length=10)

    @field_validator("interfaces")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = [i for i in value if i not in INTERFACE_NAMES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an interface; use one of {', '.join(INTERFACE_NAMES)}")
        return value


class Emulator(Strict):
    kind: Literal["simplc", "qemu"]
    profile: str
    faults: list[str] = Field(default_factory=list)
    options: dict[str, Any] = Field(default_factory=dict)


class LabgridPlace(Strict):
    """A labgrid place the device sits in (harness.labgrid): acquired through labgrid's own client for the run,
    its resources give the interface addresses the file leaves out, its power port the recovery action."""

    place: str = Field(min_length=1, description="the place's name at the coordinator")
    coordinator: str | None = Field(None, description="HOST:PORT of labgrid-coordinator; default: $LG_COORDINATOR")
    client: str | None = Field(None, description="path of labgrid-client (labgrid installed apart from the "
                               "harness); default: $LG_CLIENT, then labgrid-client on PATH")
    timeout_s: float = Field(30.0, gt=0, le=600, description="bound on each labgrid-client call")


class Recovery(Strict):
    """How a device that stopped answering (or lost its essential function) gets back to normal. The harness
    needs it before a test after a fault, and between fuzz cases: a failure is shrunk and verified only on a
    device brought back to normal, and a campaign goes on after a finding only once the device is back."""

    command: str | None = Field(None, description="command that restores the device, e.g. a power cycle; "
                                "${VAR} references are resolved (and redacted) at run time")
    wait_s: float = Field(10.0, gt=0, le=600, description="how long the device may take to answer after the "
                          "command (or an emulator's restart) returned")
    self_recovery_s: float | None = Field(
        None, gt=0, le=600, description="the device comes back by itself within this long (a watchdog restart, a "
        "listener that backs off, a task that resumes): the harness waits up to this long for it to answer again "
        "(and its essential function to run) before it runs `command`, or gives up when there is none")


class Syslog(Strict):
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(0, ge=0, le=65535, description="0: pick a free port (emulated targets)")


FR_NAMES = tuple(f"FR{n}" for n in range(1, 8))


def _sl_t(value: Any) -> Any:
    """SL-T: one level for every FR, or a vector naming each of FR1..FR7 once (as 62443-3-3 zones give it)."""
    def level(v: Any, where: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 4:
            raise ValueError(f"{where} must be a security level 1-4, not {v!r}")
        return v

    if isinstance(value, dict):
        unknown = [k for k in value if k not in FR_NAMES]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a foundational requirement: name FR1..FR7")
        missing = [fr for fr in FR_NAMES if fr not in value]
        if missing:
            raise ValueError(f"the SL-T vector leaves out {', '.join(missing)}: give all of FR1..FR7, or one number")
        return {fr: level(value[fr], fr) for fr in FR_NAMES}
    if isinstance(value, int) and not isinstance(value, bool):
        return level(value, "the claimed SL-T")
    raise ValueError(f"must be one security level 1-4 or a vector {{FR1: 2, ..., FR7: 1}}, not {value!r}")


# --- what the audit, monitoring and trust-anchor suites need (CR 3.3, 3.9, 6.1, 6.2, EDR/HDR/NDR 3.11)


class LabAction(Strict):
    """Something the lab does to the device when a suite asks, the way it would pull a cable, and how it is
    undone. An emulated target names a fault of its emulator (undone by clearing it); a real device names a
    command the lab runs (a relay, a jig), like `recovery.command`, and the command that undoes it. A step only
    a human can do is no lab action: the row it would serve stays manual."""

    description: str = Field(min_length=3)
    fault: str | None = Field(None, description="emulated targets: the emulator fault it selects")
    command: str | None = Field(None, description="a real device: the command the lab runs; ${VAR} references "
                                "are resolved (and redacted) at run time")
    undo: str | None = Field(None, description="the command that puts the device back (required with command)")
    settle_s: float = Field(0.5, ge=0, le=60, description="time the device gets to notice before it is looked at")
    timeout_s: float = Field(30.0, gt=0, le=600, description="longest the command (and its undo) may run")

    @model_validator(mode="after")
    def _one_way(self) -> LabAction:
        if (self.fault is None) == (self.command is None):
            raise ValueError("a lab action gives exactly one of fault (an emulated target) or command (a real device)")
        if self.command is not None and self.undo is None:
            raise ValueError("a lab action with a command needs undo: the command that puts the device back")
        return self


class AuditLogAccess(Strict):
    """The audit log beyond `audit_show`: rights are the role table's (`audit_show` and `audit_export` read,
    `audit_clear` and `audit_rotate` clear); no role may rewrite records."""

    format: Literal["jsonl"] = Field("jsonl", description="of audit_export's output and of the files: one JSON "
                                     "object a line")
    fields: list[str] = Field(default_factory=list, description="keys every exported record carries")
    files: list[str] = Field(default_factory=list, description="the log's paths over SFTP, readable with the "
                             "audit_export right, writable by no role")


def _function_regex(value: str) -> str:
    if not {"name", "state"} <= set(re.compile(value).groupindex):
        raise ValueError(f"{value!r} needs the named groups (?P<name>...) and (?P<state>...)")
    return value


class SelfTest(Strict):
    """The device's security self-test (`shell.commands.selftest`) and how to read its report."""

    passed: Regex = Field(description="regular expression of the report's overall pass")
    failed: Regex = Field(description="regular expression of the report's overall failure")
    function: Annotated[Regex, AfterValidator(_function_regex)] = Field(
        r"^\s*(?P<name>[\w.-]+)\s*:\s*(?P<state>.*?)\s*$", description="one function's line, with the groups "
        "name and state")
    ok: Regex = Field(r"^ok\b", description="a state that means the function works")
    functions: list[str] = Field(default_factory=list, description="security functions the report must cover")
    broken_by: dict[str, str] = Field(default_factory=dict, description="function -> the lab action that breaks it")


class Monitoring(Strict):
    latency_s: float = Field(gt=0, le=300, description="bound within which a security event reaches the syslog "
                             "receiver (CR 6.2)")


class TamperSignal(Strict):
    """A switch the harness can read: a discrete input or coil over Modbus."""

    interface: Literal["modbus_tcp", "modbus_rtu"]
    table: Literal["coils", "discrete_inputs"]
    address: int = Field(ge=0, le=65535)
    tripped: Literal[0, 1] = 1


class Tamper(Strict):
    trip: str = Field(description="the lab action that opens the enclosure or trips the switch")
    signal: TamperSignal | None = None
    notification: Regex = Field(r"(?i)tamper|intrusion|enclosure|cover open|case open", description="regular "
                                "expression of the audit record or syslog message that reports it")
    within_s: float = Field(2.0, gt=0, le=60)


class BootIntegrity(Strict):
    """How EDR/HDR/NDR 3.14 is seen: lab actions that change a part the device boots or runs (boot image,
    application bundle) and restart it. The changed part runs when the essential function is seen running
    afterwards; a refusal shows as a record matching `refusal` (audit_show or syslog)."""

    tamper: str = Field(description="the lab action that changes bytes of the part, its signature or hash left as "
                        "they were, and restarts the device")
    foreign_signature: str | None = Field(None, description="RE(1): the lab action that installs a changed part "
                                          "validly signed with a key other than the supplier's, and restarts")
    refusal: Regex = Field(r"(?i)integrity|signature|verif|refused|rejected",
                           description="regular expression of the record of a refused part")
    within_s: float = Field(30.0, gt=0, le=300, description="how long after the restart the essential function is "
                            "watched for, and the refusal record looked for")


class OwnerTrust(Strict):
    """How EDR/HDR/NDR 3.13 installs an owner root of trust: the operations `trust_anchor_install` (with
    {anchor}) and `trust_anchor_remove` in shell.commands, run by the administrator role."""

    kind: Literal["ssh_user_ca"] = Field(description="ssh_user_ca: {anchor} is an OpenSSH public key line "
                                         "('ssh-ed25519 AAAA...'), a CA the device then trusts for SSH user "
                                         "certificates (sshd TrustedUserCAKeys)")
    account: str = Field(description="the account (a key of accounts) a certificate is signed for and logs in as")


class Assurance(Strict):
    audit_log: AuditLogAccess = AuditLogAccess()
    self_test: SelfTest | None = None
    monitoring: Monitoring | None = None
    tamper: Tamper | None = None
    boot_integrity: BootIntegrity | None = None
    owner_trust: OwnerTrust | None = None
    lab_actions: dict[str, LabAction] = Field(default_factory=dict, description="name -> what the lab does")

    @model_validator(mode="after")
    def _actions_exist(self) -> Assurance:
        breaks = self.self_test.broken_by if self.self_test else {}
        named = [(f"self_test.broken_by.{function}", action) for function, action in breaks.items()]
        named += [("tamper.trip", self.tamper.trip)] if self.tamper else []
        boot = self.boot_integrity
        named += [(f"boot_integrity.{k}", a) for k, a in (("tamper", boot.tamper), ("foreign_signature",
                  boot.foreign_signature)) if a] if boot else []
        for where, action in named:
            if action not in self.lab_actions:
                raise ValueError(f"{where} names {action!r}, which lab_actions does not declare")
        return self


# --- device lifecycle (CR 3.2, 3.4, 3.10, 4.2, 7.3, 7.4, 7.6, 7.8): how a lab updates, backs up, purges and
# reads the device, as data. Operations are names in shell.commands (so the role table applies); files are
# `${VAR}` references to files on the harness's machine, resolved at run time from the environment or from
# what an emulator hands over. A file path is not a secret: it is never redacted.

FileRef = Annotated[str, Field(pattern=_ENV_REF.pattern, description="${VAR} naming a file on the harness's "
                               "machine (the vendor's image, an SBOM), resolved at run time")]
Scalar = str | bool | int | float | None


class Transfer(Strict):
    """How a file reaches the device (and comes back): SFTP on an SSH session as the acting account, or local
    commands (a vendor tool) with {file} (on the harness's machine) and {path} (on the device)."""

    method: Literal["sftp", "command"] = "sftp"
    put: str | None = Field(None, description="(command) copies local {file} to device {path}; ${VAR} resolved")
    get: str | None = Field(None, description="(command) copies device {path} to local {file}")
    remove: str | None = Field(None, description="(command) deletes device {path}")
    timeout_s: float = Field(60.0, gt=0, le=600, description="bound on one transfer")

    @model_validator(mode="after")
    def _commands(self) -> Transfer:
        if self.method == "command" and not self.put:
            raise ValueError("method command needs put: the local command that copies {file} to the device's {path}")
        return self


class FirmwareImage(Strict):
    file: FileRef
    version: str | None = Field(None, description="the version the image carries, as the device reports it")


class UpdateImages(Strict):
    """What the lab has from the vendor. The harness derives the tampered (one flipped byte), truncated and
    garbage variants from `authentic` itself, knowing nothing of the format."""

    authentic: FirmwareImage = Field(description="the vendor's authentic image, newer than the running one")
    older: FirmwareImage | None = Field(None, description="an authentic image older than the running one (a "
                                        "downgrade)")
    foreign: FirmwareImage | None = Field(None, description="an image signed by another key")
    original: FirmwareImage | None = Field(None, description="the image the device runs now (restore: reapply)")

    @model_validator(mode="after")
    def _versions(self) -> UpdateImages:
        for name in ("authentic", "older"):
            image = getattr(self, name)
            if image is not None and not image.version:
                raise ValueError(f"{name} needs its version: the harness checks it against what the device reports")
        return self


class Update(Strict):
    directory: str = Field(description="folder on the device images are put in, e.g. /update/")
    apply: str = Field(description="operation that verifies and installs (or stages) {path}")
    accepted: Regex = Field(description="the apply operation's answer when it takes the image")
    rejected: Regex = Field(description="its answer when it refuses the image")
    version: str = Field(description="operation that reports the running firmware version")
    version_pattern: Regex = Field(description="regular expression; group 1 is the running version")
    restart: str | None = Field(None, description="operation that restarts into the installed image")
    restart_wait_s: float = Field(60.0, gt=0, le=900, description="how long the device may take to come back")
    restore: Literal["reapply", "recovery"] = Field(
        "reapply", description="how the original firmware comes back after a test: reapply images.original (and "
        "restart), or recovery (the target's recovery action: the emulator's power cycle, recovery.command)")
    notify_within_s: float = Field(5.0, gt=0, le=300, description="bound on the audit record and syslog "
                                   "message of a refused image (CR 3.4 RE(2))")
    images: UpdateImages

    @field_validator("version_pattern")
    @classmethod
    def _group(cls, value: str) -> str:
        if re.compile(value).groups < 1:
            raise ValueError("needs a group: (...) around the version")
        return value


class CodeEffect(Strict):
    """What the signed and unsigned code do when they run, seen over Modbus: a holding register takes a value."""

    holding_register: int = Field(ge=0, le=65535)
    value: int = Field(ge=0, le=65535)


class Code(Strict):
    """Code the management plane can be asked to run (CR 3.2): put through `lifecycle.transfer`."""

    directory: str = Field(description="folder on the device the code is put in")
    run: str = Field(description="operation that runs {path}")
    rejected: Regex = Field(description="its answer when it refuses the code")
    unsigned: FileRef = Field(description="code the vendor did not sign")
    signed: FileRef | None = Field(None, description="the same code, signed by the vendor: it must run")
    effect: CodeEffect | None = Field(None, description="what running the code changes (restored afterwards)")


class Probe(Strict):
    """A harmless setting the harness changes (config_set) and expects a restore or a purge to undo."""

    key: str
    value: str


class Backup(Strict):
    create: str = Field(description="operation that writes a backup")
    created: Regex = Field(description="its answer; group 1 is the backup's path on the device")
    restore: str = Field(description="operation that restores {path}")
    restored: Regex = Field(description="its answer when it restores")
    rejected: Regex = Field(description="its answer when it refuses the backup")

    @field_validator("created")
    @classmethod
    def _group(cls, value: str) -> str:
        if re.compile(value).groups < 1:
            raise ValueError("needs a group: (...) around the backup's path")
        return value


class Purge(Strict):
    operation: str = Field(description="the purge or factory-reset operation")
    done: Regex = Field(description="its answer when it purged")
    wait_s: float = Field(30.0, gt=0, le=900, description="how long the device may take to come back")


class Settings(Strict):
    report: str | None = Field(None, description="operation that prints the network and security settings")
    machine_readable: str | None = Field(None, description="operation that prints them as JSON")
    baseline: dict[str, Scalar] = Field(default_factory=dict, description="setting -> the value the lab's "
                                        "secure configuration has; keys are paths in the report (security.x)")
    volatile: list[Regex] = Field(default_factory=list, description="settings (regular expressions on the key) "
                                  "that change by themselves and are not compared after a restore")


class Inventory(Strict):
    report: str | None = Field(None, description="operation that lists the installed components and versions")
    machine_readable: str | None = Field(None, description="the same as JSON: a list of {name, version}")
    firmware_component: str | None = Field(None, description="the component whose version is identity.firmware")
    sbom: FileRef | None = Field(None, description="the vendor's CycloneDX SBOM (JSON)")


class Lifecycle(Strict):
    transfer: Transfer = Transfer()
    update: Update | None = None
    code: Code | None = None
    backup: Backup | None = None
    purge: Purge | None = None
    probe: Probe | None = Field(None, description="a setting changed to see a restore (CR 7.4) or a purge "
                                "(CR 4.2) undo it")
    settings: Settings | None = None
    inventory: Inventory | None = None

    def operations(self) -> dict[str, str]:
        """Every shell operation the section names: where -> operation."""
        ops: dict[str, str] = {}
        for part in ("update", "code", "backup", "purge", "settings", "inventory"):
            section = getattr(self, part)
            for key in ("apply", "version", "restart", "run", "create", "restore", "operation", "report",
                        "machine_readable"):
                value = getattr(section, key, None) if section is not None else None
                if isinstance(value, str) and not (part == "update" and key == "restore"):
                    ops[f"lifecycle.{part}.{key}"] = value
        return ops

    def file_refs(self) -> dict[str, str]:
        """Every file reference: where -> ${VAR}."""
        refs: dict[str, str] = {}
        if self.update is not None:
            for name in ("authentic", "older", "foreign", "original"):
                image = getattr(self.update.images, name)
                if image is not None:
                    refs[f"lifecycle.update.images.{name}.file"] = image.file
        if self.code is not None:
            refs["lifecycle.code.unsigned"] = self.code.unsigned
            if self.code.signed:
                refs["lifecycle.code.signed"] = self.code.signed
        if self.inventory is not None and self.inventory.sbom:
            refs["lifecycle.inventory.sbom"] = self.inventory.sbom
        return refs


class TargetSpec(Strict):
    schema_version: Literal[1] = 1
    identity: Identity
    component_type: ComponentType
    security_level: Annotated[int | dict[str, int], BeforeValidator(_sl_t)] = Field(
        description="claimed SL-T: one number for every FR, or a vector {FR1: 2, FR2: 2, ..., FR7: 1}")
    wireless: bool = Field(False, description="the component has wireless interfaces (CR 2.2, NDR 1.6)")
    interfaces: Interfaces
    accounts: dict[str, Account] = Field(default_factory=dict)
    essential_function: EssentialFunction | None = None
    safe_state: SafeState | None = Field(None, description="outputs on loss of communication (CR 3.6)")
    services: list[Service] = Field(default_factory=list, description="what the vendor declares open (CR 7.7)")
    scan: Scan = Scan()
    networks: dict[str, Network] = Field(default_factory=dict, description="the networks the device is attached "
                                         "to by name (CR 5.1, CR 7.7)")
    policies: Policies = Policies()
    shell: Shell = Shell()
    safety: Safety = Safety()
    countermeasures: list[Countermeasure] = Field(default_factory=list)
    recovery: Recovery = Recovery()
    assurance: Assurance = Field(Assurance(), description="audit, self-test, monitoring and tamper "
                                 "(CR 3.3, 3.9, 6.1, 6.2, EDR/HDR/NDR 3.11)")
    syslog: Syslog | None = None
    emulator: Emulator | None = None
    labgrid: LabgridPlace | None = Field(None, description="a labgrid place to acquire for the run (addresses and "
                                         "power from its resources)")
    lifecycle: Lifecycle | None = Field(None, description="update, backup, purge and reports (CR 3.2, 3.4, 3.10, "
                                        "4.2, 7.3, 7.4, 7.6, 7.8); used only with safety.allow_lifecycle where "
                                        "they change the device")

    @model_validator(mode="after")
    def _lifecycle_operations(self) -> TargetSpec:
        if self.lifecycle is not None:
            for where, op in self.lifecycle.operations().items():
                if op not in self.shell.commands:
                    raise ValueError(f"{where} names operation {op!r}, which shell.commands does not declare")
            if self.lifecycle.probe is not None and "config_set" not in self.shell.commands:
                raise ValueError("lifecycle.probe needs the config_set operation in shell.commands")
        return self

    @model_validator(mode="after")
    def _consistent(self) -> TargetSpec:
        if self.emulator is None and self.labgrid is None:  # (a labgrid place's resources may give them)
            for name in self.interfaces.declared():
                iface = getattr(self.interfaces, name)
                missing = [f for f in _ADDRESS_FIELDS[name] if getattr(iface, f) is None]
                if missing:
                    raise ValueError(f"interfaces.{name} needs {', '.join(missing)} (only an emulated "
                                     "target may leave its address to the emulator)")
        for account in self.accounts.values():
            if self.policies.roles and account.role not in self.policies.roles:
                raise ValueError(f"account {account.username!r} has role {account.role!r}, which "
                                 f"policies.roles does not define (defined: {', '.join(self.policies.roles)})")
        admin_role = self.policies.administrator_role
        if self.policies.roles and admin_role not in self.policies.roles:
            raise ValueError(f"policies.administrator_role is {admin_role!r}, which policies.roles does not define "
                             f"(defined: {', '.join(self.policies.roles)})")
        unlock = self.policies.lockout.admin_unlock if self.policies.lockout else None
        if unlock and unlock not in self.shell.commands:
            raise ValueError(f"policies.lockout.admin_unlock names {unlock!r}, which shell.commands does not "
                             "declare")
        ef = self.essential_function
        for via in ef.via if ef else ():
            if getattr(self.interfaces, via) is None:
                raise ValueError(f"essential_function.via names {via!r}, which interfaces does not declare")
        for i, watched in enumerate(ef.also if ef else ()):
            self._check_watched(f"essential_function.also[{i}]", watched)
        return self

    def _check_watched(self, where: str, watched: WatchedSignal) -> None:
        kind, via = watched.signal.kind, watched.via
        carriers = {"coil": ("modbus_tcp", "modbus_rtu"), "counter": ("modbus_tcp", "modbus_rtu"),
                    "can_heartbeat": ("can",), "console_line": ("console",), "command": ("ssh",)}[kind]
        if via not in carriers:
            raise ValueError(f"{where}: a {kind} signal is seen over {' or '.join(carriers)}, not {via}")
        if watched.endpoint is None and getattr(self.interfaces, via) is None:
            raise ValueError(f"{where}.via names {via!r}, which interfaces does not declare")
        if watched.endpoint is not None and via != "modbus_tcp":
            raise ValueError(f"{where}.endpoint is for modbus_tcp only")
        if kind == "command" and (watched.account is None or watched.account not in self.accounts):
            raise ValueError(f"{where}: a command signal needs `account`, the key of an account in accounts")

    @property
    def sl_t(self) -> dict[str, int]:
        """SL-T per FR (FR1..FR7), whichever way the target file gave it."""
        level = self.security_level
        return {fr: level[fr] for fr in FR_NAMES} if isinstance(level, dict) else dict.fromkeys(FR_NAMES, level)

    @model_validator(mode="after")
    def _trust_and_boot(self) -> TargetSpec:
        trust = self.assurance.owner_trust
        if trust is not None and trust.account not in self.accounts:
            raise ValueError(f"assurance.owner_trust.account names {trust.account!r}, which accounts does not declare")
        missing = [op for op in ("trust_anchor_install", "trust_anchor_remove") if op not in self.shell.commands]
        if trust is not None and missing:
            raise ValueError(f"assurance.owner_trust needs {' and '.join(missing)} in shell.commands")
        if self.assurance.boot_integrity is not None and self.essential_function is None:
            raise ValueError("assurance.boot_integrity needs essential_function: it shows whether a changed part runs")
        return self

    @model_validator(mode="after")
    def _assurance_interfaces(self) -> TargetSpec:
        signal = self.assurance.tamper.signal if self.assurance.tamper else None
        if signal is not None and getattr(self.interfaces, signal.interface) is None:
            raise ValueError(f"assurance.tamper.signal.interface names {signal.interface!r}, which interfaces does "
                             "not declare")
        return self

    def with_endpoints(self, endpoints: dict[str, dict[str, Any]]) -> TargetSpec:
        """The same target with interface addresses filled in (by an emulator that picked them)."""
        updated = {}
        for name, fields in endpoints.items():
            iface = getattr(self.interfaces, name, None) if name in INTERFACE_NAMES else None
            if iface is not None:
                updated[name] = iface.model_copy(update=fields)
        # an emulated device's networks exist only where its emulator attached them (and named the namespace)
        given = endpoints.get("networks", {})
        networks = {name: net.model_copy(update=given[name]) for name, net in self.networks.items() if name in given}
        return self.model_copy(update={"interfaces": self.interfaces.model_copy(update=updated),
                                       "networks": networks})


# --- loading


def shipped_targets_dir() -> Path:
    """The target files that come with the harness (emulated targets, `examples/`)."""
    import iec62443_harness.targets as shipped

    return Path(shipped.__file__).resolve().parent


def search_path(extra: str | Path | None = None, cwd: Path | None = None) -> list[Path]:
    """Where a bare target name is looked up, in order: `extra` (--targets-dir), ./targets, the shipped ones."""
    dirs = [Path(extra)] if extra else []
    dirs += [(cwd or Path.cwd()) / "targets", shipped_targets_dir()]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in unique:
            unique.append(d.resolve())
    return unique


def available_targets(search: list[Path] | None = None) -> list[str]:
    return sorted({p.stem for d in (search or search_path()) for p in d.glob("*.yaml")})


def find_target_file(name_or_path: str, search: list[Path] | None = None) -> Path:
    """A bare name means NAME.yaml in the first folder of `search` that has it; anything with a slash or a
    .yaml suffix is a path."""
    if "/" in name_or_path or name_or_path.endswith((".yaml", ".yml")):
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            raise HarnessError(f"{path} is a folder: give --target a target file (NAME.yaml) or a target name")
        if not path.is_file():
            raise HarnessError(f"target file {path} does not exist: check the path given to --target")
        return path
    dirs = search if search is not None else search_path()
    for d in dirs:
        path = d / f"{name_or_path}.yaml"
        if path.is_file():
            return path
    known = ", ".join(available_targets(dirs)) or "none"
    raise HarnessError(f"unknown target {name_or_path!r}: no {name_or_path}.yaml in {', '.join(map(str, dirs))}; "
                       f"available targets: {known} (or give a path to a target file)")


def suggested_variable(target: str, account: str, field: str = "password") -> str:
    """An environment variable name for an account's credential: `<TARGET>_<ACCOUNT>_PASSWORD` (or `_KEY_FILE`)."""
    suffix = "KEY_FILE" if field == "private_key_file" else "PASSWORD"
    name = re.sub(r"[^A-Za-z0-9]+", "_", f"{target}_{account}_{suffix}").strip("_").upper()
    return name if re.match(r"[A-Z_]", name) else f"_{name}"  # a name may not start with a digit


def _describe(error: Mapping[str, Any], target: str = "target") -> str:
    loc = error["loc"]
    where = ".".join(str(p) for p in loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}: remove it or fix its spelling"
    if error["type"] == "missing":
        return f"missing key {where!r}: add it"
    if error["type"] == "string_pattern_mismatch" and where.endswith(("password", "private_key_file")):
        account = str(loc[1]) if len(loc) == 3 and loc[0] == "accounts" else "account"
        var = suggested_variable(target, account, str(loc[-1]))
        return (f"{where} must be an environment reference like '${{{var}}}', never a literal: write "
                f"'${{{var}}}' and export {var}=... before running")
    msg = error["msg"]
    if error["type"] == "value_error":  # our own validators' messages, without pydantic's prefix
        msg = msg.removeprefix("Value error, ")
    return f"{where}: {msg}"


def load_target(path: Path) -> TargetSpec:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HarnessError(f"cannot read target file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise HarnessError(f"target file {path} does not parse{at}: {problem}; fix the YAML syntax") from None
    if not isinstance(raw, dict):
        raise HarnessError(f"target file {path} must be a YAML mapping of keys (identity, interfaces, ...)")
    try:
        return TargetSpec.model_validate(raw)
    except ValidationError as exc:
        first = _describe(exc.errors()[0], path.stem)
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise HarnessError(f"target file {path}: {first}{more}") from None


def expand_refs(text: str) -> str:
    """`text` with each `${VAR}` replaced by its (redacted) value, e.g. a recovery command's community string."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", lambda m: resolve_secret(m.group(0), "recovery.command"), text)


def _env_var(ref: str) -> str:
    found = _ENV_REF.match(ref)
    assert found is not None  # the model admits only `${VAR}` here
    return found.group(1)


def resolve_secret(ref: str, account: str, extra: dict[str, str] | None = None) -> Secret:
    """Resolve one `${VAR}` reference from the environment (or values an emulator handed over)."""
    var = _env_var(ref)
    value = (extra or {}).get(var, os.environ.get(var))
    if value is None:
        raise HarnessError(f"credential of account {account!r} needs environment variable {var}, which is "
                           f"not set: export {var}=... before running")
    if value not in published_passwords():  # a published factory default protects nothing when hidden
        redact.add(value)  # from now on no report, log or terminal line shows it
    return Secret(value)


def resolve_file(ref: str, where: str, extra: dict[str, str] | None = None) -> Path:
    """Resolve one `${VAR}` file reference (the environment, or files an emulator handed over) to an existing
    file. A path is not a secret: nothing is redacted."""
    var = _env_var(ref)
    value = (extra or {}).get(var, os.environ.get(var))
    if value is None:
        raise HarnessError(f"{where} needs environment variable {var} (a file path), which is not set: export "
                           f"{var}=... before running")
    path = Path(value).expanduser()
    if not path.is_file():
        raise HarnessError(f"{where} is {ref} = {path}, which is not a readable file: check the path")
    return path
