"""`iec62443 rebuild RUN_DIR`: rebuild every matrix file of a run from its results.jsonl."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iec62443_harness.errors import HarnessError
from iec62443_harness.report.render import load_matrix, write_reports
from iec62443_harness.report.results import RESULTS_FILE
from iec62443_harness.report.summary import print_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iec62443 rebuild",
        description="Rebuild matrix.json/.csv/.md/.html and junit.xml of a run folder from its results.jsonl "
                    "and print the summary.")
    parser.add_argument("run_dir", type=Path, help="a run folder: reports/<target>/<run-id> or reports/<target>/latest")
    run_dir: Path = parser.parse_args(argv).run_dir

    def fail(message: str) -> int:
        print(f"iec62443 rebuild: {message}", file=sys.stderr)
        return 2

    if not run_dir.is_dir():
        return fail(f"no run folder at {run_dir}: give the folder a run wrote, e.g. reports/sim-plc/latest")
    if not (run_dir / RESULTS_FILE).is_file():
        return fail(f"{run_dir} has no {RESULTS_FILE}: give the folder of a run (reports/<target>/<run-id>), "
                    "not its parent")
    try:
        write_reports(run_dir)
        matrix = load_matrix(run_dir)
    except HarnessError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the reports in {run_dir} ({exc.strerror}): check that the folder is writable")
    print_summary(matrix, run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
