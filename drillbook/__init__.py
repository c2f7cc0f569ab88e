"""drillbook: runbooks as executable, auditable drills."""

__version__ = "0.1.0"
