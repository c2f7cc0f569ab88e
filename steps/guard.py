"""The one way a step runs a check: its verdict recorded, "could not check" turned into an error verdict."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from checks.errors import DrillbookError
from checks.verdict import Verdict, record, verdict_from_error


def guarded(check_id: str, action: Callable[[], Verdict], *, bad_input: bool = False) -> Verdict:
    """Run ``action`` and record its verdict (a failing one fails the step).

    A drillbook error (bad config, missing target, unreadable input) and an
    unreachable database become an *error* verdict naming what and where;
    with ``bad_input``, so does a ValueError (a malformed value in the feature).
    """
    try:
        verdict = action()
    except DrillbookError as exc:
        verdict = verdict_from_error(check_id, exc)
    except psycopg.OperationalError as exc:
        verdict = Verdict.error(check_id, f"database unreachable: {str(exc).strip()}")
    except ValueError as exc:
        if not bad_input:
            raise
        verdict = Verdict.error(check_id, str(exc))
    return record(verdict)
