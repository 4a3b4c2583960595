"""Helpers shared by the test modules: worlds to test against, writers of input files,
hypothesis strategies and golden comparisons. Test modules import from here, never from
each other."""

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
