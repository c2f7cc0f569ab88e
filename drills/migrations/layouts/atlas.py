"""atlas: filled in by issue 12 (see drills/migrations/layouts/__init__.py)."""

NAME = "atlas"
