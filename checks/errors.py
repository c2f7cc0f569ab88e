"""drillbook's exception tree. Every error carries context and a remediation hint.

::

    DrillbookError
    ├── ConfigError                  bad or unknown key, bad value, missing ${ENV}
    │   └── MissingPackage           the chosen environment's Python package is not installed
    ├── SafetyError                  a write would touch something that is not scratch
    │   ├── NotScratch               the target is a subject
    │   ├── ScratchNotEmpty          the configured scratch database holds objects
    │   ├── ScratchOnSubjectServer   the configured scratch is on a subject's server (or may be)
    │   ├── ScratchRoleTooPowerful   the configured scratch's role could reach beyond its database
    │   └── ScratchNotRestored       cleanup could not leave the configured scratch as it was found
    ├── EnvironmentError_            a local server or container could not be provided
    │   └── ServerStartError         a server never became ready before its deadline
    ├── BackupError                  a backup could not be found, read or restored
    │   ├── NoBackupFound
    │   ├── BackupUnreadable         zero bytes, truncated, not a dump
    │   │   └── ChecksumMismatch     the sidecar's digest differs (checked before any restore)
    │   ├── StoreUnreachable         the S3 endpoint or directory cannot be listed
    │   └── RestoreFailed            pg_restore / psql exited non-zero
    │       ├── BackupRefused        the backup tried a meta-command or a superuser-only right
    │       └── RestoreTimedOut      the restore passed its deadline and was cancelled
    ├── DiskError                    a file could not be written (disk full, read-only, no
    │                                permission): names the path and the phase
    ├── TargetUnreachable            a subject database or service does not answer
    │   └── AuthenticationFailed     it answers, but refuses the credentials
    └── UnusableAnswer               it answers, but not with something checkable (not JSON,
                                     a missing JSON path, a query error, an empty result)

Catching code can tell "could not check" (``error`` verdicts) from
"checked and failed" by class, never by message.
"""

from __future__ import annotations

from typing import Any


class DrillbookError(Exception):
    """Root of every drillbook error: a message, keyword context, and a hint."""

    default_hint = ""

    def __init__(self, message: str, *, hint: str | None = None, **context: Any) -> None:
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.context = context
        super().__init__(message)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} (hint: {self.hint})"
        return self.message


class ConfigError(DrillbookError):
    default_hint = "fix the named key; docs/configuration.md documents every key"


class MissingPackage(ConfigError):
    """An install problem, reported like a configuration one: nothing ran, exit 2."""

    default_hint = "run ./bootstrap again: it installs every dependency from constraints.txt"


class SafetyError(DrillbookError):
    pass


class NotScratch(SafetyError):
    default_hint = (
        "drills write only to scratch targets: let drillbook create one, "
        "or mark an empty target `scratch = true` in the config"
    )


class ScratchNotEmpty(SafetyError):
    default_hint = "point `scratch` at an empty database or let drillbook create one"


class ScratchOnSubjectServer(SafetyError):
    default_hint = (
        "point `scratch` at a database on a server that holds no subject, or let drillbook create one"
    )


class ScratchRoleTooPowerful(SafetyError):
    default_hint = (
        "as a superuser on the scratch server run: CREATE ROLE drill LOGIN PASSWORD '...'; "
        "CREATE DATABASE scratch OWNER drill; then point `scratch` at "
        "postgresql://drill@HOST:PORT/scratch (password from ${ENV})"
    )


class ScratchNotRestored(SafetyError):
    default_hint = (
        "compare the configured scratch database with the differences named, and restore it by hand "
        "before the next run"
    )


class EnvironmentError_(DrillbookError):  # trailing underscore: avoids shadowing the builtin
    pass


class ServerStartError(EnvironmentError_):
    pass


class BackupError(DrillbookError):
    pass


class NoBackupFound(BackupError):
    default_hint = "check the store's URL, prefix and key pattern, and that backups ran"


class BackupUnreadable(BackupError):
    default_hint = "the backup file itself is damaged: take a fresh backup and investigate the job"


class ChecksumMismatch(BackupUnreadable):
    default_hint = ("the backup is not the file its job wrote (damaged or altered): it was never "
                    "restored; take a fresh backup and investigate the store")


class StoreUnreachable(BackupError):
    default_hint = "check the endpoint URL, credentials and network path to the backup store"


class RestoreFailed(BackupError):
    default_hint = "the dump does not restore cleanly: read the restore log in the evidence"


class BackupRefused(RestoreFailed):
    """The backup tried what a restore may not do (a psql meta-command, a superuser-only statement)."""

    default_hint = "the backup tried something only a superuser or psql's client side may do"


class RestoreTimedOut(RestoreFailed):
    """Past its deadline (the scenario's RTO plus a margin, or ``[run] restore_timeout``): cancelled."""

    default_hint = (
        "the restore hangs or is far slower than its limit: read the restore log for a statement that "
        "sleeps or waits (a function in a CHECK constraint or index), or raise the limit "
        "(`Then the restore completes within ...`, or `[run] restore_timeout` in drillbook.toml)"
    )


class DiskError(DrillbookError):
    """Writing failed (ENOSPC, EROFS, EACCES, ...): ``path`` and ``phase`` say where and when."""

    default_hint = "free space where the path lives, or point the output elsewhere"


class TargetUnreachable(DrillbookError):
    default_hint = "check the DSN, credentials and that the server is running"


class AuthenticationFailed(TargetUnreachable):
    default_hint = "check the password or token the config resolves from ${ENV} for this target"


class UnusableAnswer(DrillbookError):
    default_hint = (
        "the target answered, but not in the shape the step expects: "
        "compare the step's path or query with what the service serves"
    )
