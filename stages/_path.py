"""Lets `python stages/<stage>.py` import the package from the repository root without installing it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
