"""CR 1.5 Authenticator management (SL 1-4) and CR 1.5 RE(1) Hardware security for authenticators (SL 3-4).

Judges CR 1.5 over ssh, the serial console and the web login (https; never plain http, where a password would
cross the wire in clear): no well-known default credential logs in (a web login is judged by the target file's
login markers, and one accepted is logged out again). The list is
`harness/data/default-credentials.csv` (common ICS/IoT factory defaults) plus the vendor's own published
defaults from `policies.default_credentials`. Sweeps never lock an account the run needs: for a username
the target file declares, a correct login resets the failure count before the lockout threshold is
reached (after at most two guesses when no lockout policy is declared), and a reset that
is refused ends the row as ERROR; for other usernames at most threshold-1 guesses are made per unlock
period. Pairs left untried for that reason or for the time budget make the row manual, with the untried
pairs as the checklist, unless a tried one was already accepted (FAIL).
Modbus and CAN carry no authenticators: the sweep does not apply to them (CR 1.1 judges them).
Manual: the forced change of initial credentials when the target claims it (it needs a factory-reset
device), and RE(1), the hardware protection of stored authenticators.
"""

from __future__ import annotations

import time

import pytest
from iec62443_harness.fixtures.outcomes import inconclusive, manual, not_applicable, not_run
from iec62443_harness.wordlists import default_credentials

SWEEP_BUDGET_S = 30.0
LONG_UNLOCK_S = 10.0  # waiting longer than this per username is not worth it: skip and say so
GUESSES_WITHOUT_POLICY = 2  # per declared username between resetting logins, when no lockout policy is declared


def _candidates(target) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    extra = [(c.username, c.password, "declared by the vendor") for c in target.spec.policies.default_credentials]
    seen, pairs = set(), []
    for user, pw, source in [*extra, *default_credentials()]:
        if (user, pw) not in seen:
            seen.add((user, pw))
            pairs.append((user, pw, source))
    return pairs


def _reset(login, creds) -> None:  # type: ignore[no-untyped-def]
    """A correct login, so the guesses before it never add up to a lockout."""
    if not login.attempt(creds.username, creds.password).accepted:
        inconclusive(f"declared account {creds.username} does not log in with its password over "
                           f"{login.interface} during the sweep (locked, or a wrong credential): check the account")


@pytest.mark.judges("CR 1.5", over=["ssh", "console", "https"])
def test_default_credentials_refused(target, login, evidence):
    policy = target.spec.policies.lockout
    per_round = max(1, policy.threshold - 1) if policy else 10**6
    unlock_s = policy.unlock_after_s if policy and policy.unlock_after_s else None
    known = {c.username: c for c in target.accounts() if c.password}
    by_user: dict[str, list[tuple[str, str]]] = {}
    for user, pw, source in _candidates(target):
        by_user.setdefault(user, []).append((pw, source))

    accepted, tried, skipped = [], 0, []
    deadline = time.monotonic() + SWEEP_BUDGET_S
    for user, guesses in by_user.items():
        step = min(per_round, GUESSES_WITHOUT_POLICY) if user in known and policy is None else per_round
        for start in range(0, len(guesses), step):
            if time.monotonic() > deadline:
                skipped.extend(f"{user}/{pw!r}" for pw, _ in guesses[start:])
                break
            if start:  # another round for this username: reset its failure count first
                if user in known:
                    _reset(login, known[user])
                elif unlock_s is not None and unlock_s <= LONG_UNLOCK_S:
                    time.sleep(unlock_s + 0.3)
                else:
                    skipped.extend(f"{user}/{pw!r}" for pw, _ in guesses[start:])
                    break
            for pw, source in guesses[start:start + step]:
                tried += 1
                attempt = login.attempt(user, pw)
                if attempt.accepted or attempt.outcome == "PARTIAL":  # PARTIAL: taken as a first factor
                    accepted.append(f"{user}/{pw!r} ({attempt.outcome}; {source})")
        if user in known:  # leave declared accounts with a clean count
            _reset(login, known[user])
    evidence.add("check", f"{tried} default credentials tried over {login.interface}; accepted: "
                          f"{', '.join(accepted) or 'none'}")
    if skipped:
        evidence.add("check", f"not tried, to avoid locking accounts or over budget: {', '.join(skipped)}")
    assert not accepted, f"default credentials log in over {login.interface}: {', '.join(accepted)}"
    if skipped:
        manual(f"{tried} default credentials were refused over {login.interface}, but {len(skipped)} could not "
               "be tried (time budget, or to avoid locking accounts)", [
                   f"On {login.interface}, try each of these username/password pairs and confirm every one is "
                   f"refused: {', '.join(skipped)}.",
                   "Between guesses for one username, reset its failure count (a correct login, or wait for the "
                   "unlock) so that no account the site needs is locked."])
    if not tried:
        not_run("no default credential to try (harness/data/default-credentials.csv and "
                "policies.default_credentials are empty)")


@pytest.mark.judges("CR 1.5")
def test_forced_change_of_initial_credentials(target):
    if not target.spec.policies.forced_initial_password_change:
        not_applicable("the target claims no forced change of initial credentials")
    manual("the target claims a forced change of initial credentials; it can only be seen on a device in its "
           "factory state", ["Factory-reset the component (or take a new one).",
                             "Log in with the initial credentials on each interface that offers login.",
                             "Confirm that nothing but a password change is possible before the change.",
                             "Confirm the old initial credential is refused after the change."])


@pytest.mark.judges("CR 1.5 RE(1)")
def test_hardware_protection_of_authenticators(target):
    manual("storage of authenticators in hardware cannot be observed over the device's interfaces",
           ["Identify where the component stores passwords, keys and other authenticators (vendor docs).",
            "Confirm they are protected by a hardware mechanism (TPM, secure element, HSM, secure enclave).",
            "Confirm they cannot be read out through debug ports or by removing the storage medium.",
            "Attach the vendor's design evidence to this row."])
