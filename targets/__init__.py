"""Target files shipped with the harness: the emulated targets and `examples/`.

`pytest --target NAME` looks for NAME.yaml in the working directory's `targets/` first (or the folder given
by `--targets-dir` / the `iec62443_targets_dir` ini key), then here.
"""
