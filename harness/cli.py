"""`iec62443 COMMAND ...`: the tools a lab types beside `pytest --target NAME`."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {  # name -> (module[:function], whose main(argv) -> int runs it; what it does)
    "rebuild": ("iec62443_harness.report.__main__", "rebuild a run's matrix files from its results.jsonl"),
    "merge": ("iec62443_harness.report.merge", "merge runs of one target (machines, workers, -k halves) into one"),
    "seal": ("iec62443_harness.report.seal:seal_main", "pack a run folder as one evidence bundle, print its hash"),
    "verify": ("iec62443_harness.report.seal:verify_main", "check a bundle or run folder against its manifest"),
    "diff": ("iec62443_harness.report.diff", "rows whose verdict changed between two runs, SL-C before and after"),
    "replay": ("iec62443_harness.fixtures.fuzz.replay", "replay stored fuzz cases against a target"),
    "simplc": ("iec62443_harness.labs.simplc.__main__", "run the emulated PLC in the foreground"),
    "qemu-build": ("iec62443_harness.labs.qemu.build", "build (or find) the QEMU lab's guest image"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
        print("usage: iec62443 COMMAND [ARGS]  (iec62443 COMMAND --help for its options)\n" + "\n".join(lines),
              file=sys.stderr)
        return 2
    module, _ = COMMANDS[args[0]]
    module, _, func = module.partition(":")
    return int(getattr(importlib.import_module(module), func or "main")(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
