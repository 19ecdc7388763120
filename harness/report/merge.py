"""`iec62443 merge -o OUT RUN...`: the results of one target from several machines, workers or complementary
selections (`-k` halves) as one run, with its own results.jsonl and every report file.

Per test, a real outcome from any source replaces the placeholders other sources recorded for it (deselected,
not reached, interrupted); of two real outcomes, the one that ended last counts. Outcomes are ordered by the
sources' collection order (the results header's `collected`), so a merge of the halves of a run reads like the
whole. The merged run is complete only when every test a source selected has a result and no source was cut off.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from iec62443_harness.errors import HarnessError
from iec62443_harness.report.results import (
    DESELECTED,
    NOT_REACHED,
    PLACEHOLDERS,
    RESULTS_FILE,
    RunRecord,
    Timing,
    now_iso,
    read_results,
    redact_all,
)
from iec62443_harness.verdicts import Outcome, Verdict

# Header fields that must agree: merging two devices, two firmwares or two SL-T claims would mix verdicts.
MUST_AGREE = ("target", "component_type", "security_level", "identity")


def _is_placeholder(out: Outcome) -> bool:
    return out.verdict is Verdict.NOT_RUN and out.reason in PLACEHOLDERS


def _check(records: list[tuple[Path, RunRecord]]) -> None:
    first_path, first = records[0]
    for path, rec in records[1:]:
        for key in MUST_AGREE:
            if rec.header.get(key) != first.header.get(key):
                raise HarnessError(f"{path} and {first_path} differ in {key} ({rec.header.get(key)!r} vs "
                                   f"{first.header.get(key)!r}): only runs of one target, as one target file "
                                   "describes it, merge; compare the others with iec62443 diff")


def merge_records(records: list[tuple[Path, RunRecord]], run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                                 dict[str, Any]]:
    """The merged run's results.jsonl lines: (header, outcome lines, end line)."""
    if not records:
        raise HarnessError("nothing to merge: name at least one run folder")
    _check(records)
    order: list[str] = []
    for _, rec in records:
        order += [t for t in rec.header.get("collected") or [] if isinstance(t, str)]
    chosen: dict[str, tuple[Outcome, Timing]] = {}
    duplicates: list[str] = []
    for _, rec in records:
        for out, timing in zip(rec.outcomes, rec.timings, strict=True):
            order.append(out.test)
            have = chosen.get(out.test)
            if have is None:
                chosen[out.test] = (out, timing)
            elif _is_placeholder(have[0]):
                # a real outcome beats any placeholder; "not reached" (it was selected) beats "deselected"
                if not _is_placeholder(out) or have[0].reason == DESELECTED:
                    chosen[out.test] = (out, timing)
            elif not _is_placeholder(out):
                duplicates.append(out.test)
                if (timing.ended or "") >= (have[1].ended or ""):
                    chosen[out.test] = (out, timing)
    order = list(dict.fromkeys(order))
    # a test one source selected (collected and did not deselect) but none recorded: that source was cut off
    selected = set()
    for _, rec in records:
        dropped = {o.test for o in rec.outcomes if _is_placeholder(o) and o.reason == DESELECTED}
        selected |= {t for t in rec.header.get("collected") or [] if t not in dropped}
    for test, (out, timing) in chosen.items():
        if _is_placeholder(out) and out.reason == DESELECTED and test in selected:
            chosen[test] = (replace(out, reason=NOT_REACHED), timing)
    missing = [t for t in order if t not in chosen]  # collected by a source that was cut off before recording it
    unreached = len(missing) + sum(1 for out, _ in chosen.values()
                                   if _is_placeholder(out) and out.reason != DESELECTED)
    lines = []
    for test in order:
        if test in chosen:
            out, timing = chosen[test]
            lines.append({"type": "outcome", "test": out.test, "rows": list(out.rows), "verdict": str(out.verdict),
                          "reason": out.reason, "interface": out.interface, "evidence": list(out.evidence),
                          "checklist": list(out.checklist), "duration_s": timing.duration_s, "ended": timing.ended})
    header = dict(records[0][1].header)
    all_paths = [rec.header.get("selection", {}).get("paths") or [] for _, rec in records]
    header.update(
        run_id=run_id, started=min((r.header.get("started") or "" for _, r in records), default="") or None,
        command=f"iec62443 merge -o {run_id} " + " ".join(str(p) for p, _ in records),
        merged_from=[str(p) for p, _ in records], collected=order,
        selection={"deselected": sum(1 for out, _ in chosen.values() if out.reason == DESELECTED and
                                     _is_placeholder(out)),
                   # a source that collected every suite decides; only when all were limited by path is the merge
                   "paths": sorted({p for paths in all_paths for p in paths}) if all(all_paths) else []},
    )
    if duplicates:
        header["notes"] = [*header.get("notes", []),
            f"{len(duplicates)} tests have results in more than one source; the one that ended last counts: "
            + ", ".join(duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")]
    ended = [r.ended for _, r in records]
    failed = any(out.verdict in (Verdict.FAIL, Verdict.ERROR) for out, _ in chosen.values())
    end = {"type": "end", "ended": max(e for e in ended if e) if any(ended) else now_iso(),
           "exit_status": 2 if unreached else int(failed), "unreached": unreached}
    return header, lines, end


def merge_runs(sources: list[Path], out_dir: Path) -> Path:
    """Write the merged run folder `out_dir` (new) with its results.jsonl and every report file."""
    from iec62443_harness.report.render import write_reports

    records = []
    for src in sources:
        path = src / RESULTS_FILE if src.is_dir() else src
        if not path.is_file():
            raise HarnessError(f"{src} has no {RESULTS_FILE}: give run folders (reports/<target>/<run-id>)")
        records.append((src, read_results(path)))
    header, lines, end = merge_records(records, out_dir.name)
    if out_dir.exists():
        raise HarnessError(f"{out_dir} already exists: merge into a new folder")
    out_dir.mkdir(parents=True)
    text = "".join(json.dumps(redact_all(rec), ensure_ascii=False) + "\n" for rec in (header, *lines, end))
    (out_dir / RESULTS_FILE).write_text(text, encoding="utf-8")
    write_reports(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="iec62443 merge", description="Merge the results of one target from several runs (machines, workers, "
        "complementary -k selections) into one run folder with every report file.")
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (or their results.jsonl files)")
    parser.add_argument("-o", "--output", type=Path, required=True,  # never a default: a merge is a new run
                        help="the new run folder to write, e.g. reports/plc01/merged-1")
    args = parser.parse_args(argv)
    try:
        out = merge_runs(args.runs, args.output)
        from iec62443_harness.report.render import load_matrix
        from iec62443_harness.report.summary import print_summary

        print_summary(load_matrix(out), out)
    except HarnessError as exc:
        print(f"iec62443 merge: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"iec62443 merge: cannot write {args.output} ({exc.strerror}): choose a writable folder", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
