"""``drillbook doctor``: read-only checks of the setup, each one line with a verdict and a fix.

::

    cli.py          the command: which checks a config (or none) calls for; text or JSON; exit code
    base.py         a check (name + function → Verdict), run concurrently under a deadline, rendered
    environment.py  this machine: PostgreSQL binaries and client versions, redis-server, the postgres
                    OS user, cache and temp dirs, the ledger location
    targets.py      each configured target reachable with its credentials, per kind
    postgres.py     a subject's role privileges, a configured scratch (drills/scratch_guard.py), the clock

Nothing here writes to a target: PostgreSQL sessions are opened read-only; the only writes are a
temp file created and removed beside the ledger (or in the cache dir), and a marker object put and
deleted under the S3 ledger's doctor prefix (the one ``drillbook doctor ledger`` races on).
"""
