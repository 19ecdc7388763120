"""Core of the IEC 62443-4-2 conformance harness: target files, catalogue, verdicts, reports."""

__version__ = "0.1.0"
