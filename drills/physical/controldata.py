"""Read a restored data directory's ``pg_control`` with ``pg_controldata`` (no shell, bounded)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from checks import controldata
from checks.errors import RestoreFailed
from checks.redact import redact
from drills.processes import server_user_kwargs

TIMEOUT_S = 30.0


def standby_settings(datadir: Path, bindir: Path) -> dict[str, str]:
    """Settings the scratch server must raise to replay this cluster's WAL as a hot standby."""
    argv = [str(bindir / "pg_controldata"), "-D", str(datadir)]
    try:
        done = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, timeout=TIMEOUT_S,
                              env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}, cwd="/", check=False,
                              **server_user_kwargs())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RestoreFailed(f"pg_controldata could not read {datadir}: {redact(str(exc))}",
                            hint="the restored data directory has no readable global/pg_control") from exc
    if done.returncode != 0:
        said = redact(done.stderr[:2000].decode("utf-8", "replace").strip())
        raise RestoreFailed(f"pg_controldata could not read {datadir}: {said}",
                            hint="the backup's global/pg_control is missing or damaged")
    try:
        return controldata.standby_settings(controldata.parse(
            done.stdout[:controldata.MAX_OUTPUT].decode("utf-8", "replace")))
    except controldata.TooLarge as exc:
        raise RestoreFailed(
            f"the backup's pg_control asks a hot standby for {exc}", setting=exc.setting,
            hint="recovering this backup needs that much shared memory; restore it by hand on a "
                 "host sized for it") from exc
