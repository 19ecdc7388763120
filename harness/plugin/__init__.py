"""The pytest plugin: options and hooks (`hooks`), fixtures (`fixtures`), recording and reports.

Registered through the `pytest11` entry point as `iec62443_harness.plugin.hooks`. It does nothing until a
run names a target (`--target`, or the `iec62443_target` ini key): other projects in the same environment
never see its fixtures.
"""
