"""User-facing errors: one line that names the cause and the fix, never a traceback."""


class HarnessError(Exception):
    """A problem with the harness's input (target file, options, environment).

    The message is shown as-is on one line, so it must say what is wrong and how to fix it.
    """
