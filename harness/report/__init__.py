"""Reports of a run: results.jsonl (the record, appended as tests end) and the matrix files built from it.

    writer = ResultsWriter(run_dir / "results.jsonl")   # the plugin: header(), outcome() per test, end()
    write_reports(run_dir)                                # matrix.json/.csv/.md/.html, junit.xml
    print_summary(load_matrix(run_dir), run_dir)

Beside them: gate.py (the exit gate over the matrix rows), oscal.py (oscal-ar.json), seal.py (manifest.json,
`iec62443 seal` and `verify`), diff.py and merge.py (`iec62443 diff` and `merge`), environment.py (what a run ran
with).
"""

from iec62443_harness.report.matrix import MATRIX_SCHEMA, MATRIX_SCHEMA_VERSION, build_matrix
from iec62443_harness.report.render import REPORT_FILES, load_matrix, render_all, write_reports
from iec62443_harness.report.results import RESULTS_FILE, ResultsWriter, RunRecord, read_results
from iec62443_harness.report.summary import print_summary, summary_lines

__all__ = ["MATRIX_SCHEMA", "MATRIX_SCHEMA_VERSION", "REPORT_FILES", "RESULTS_FILE", "ResultsWriter", "RunRecord",
           "build_matrix", "load_matrix", "print_summary", "read_results", "render_all", "summary_lines",
           "write_reports"]
