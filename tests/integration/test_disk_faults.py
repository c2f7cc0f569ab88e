"""Full disks are errors naming the path and the phase, and never leave half a report (issue 11, item 5).

Each test mounts a small tmpfs of its own (root only; skipped with the reason otherwise), fills it
to a chosen number of free pages, and points drillbook's output or TMPDIR at it. The tmpfs is
always unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from checks.errors import DiskError
from checks.files import write_atomic
from drills import pgtools
from drills.local import LocalScratch
from drills.processes import template_datadir
from drills.restore import RestoreDrill
from drills.sandbox.history import default_cache_dir
from drills.targets import StoreSpec

REPO = Path(__file__).resolve().parents[2]
PAGE = 4096


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs mounted for this test alone; unmounted in ``finally``."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tmpfs"
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or mounted.returncode}")
    # Reachable by the `postgres` OS user, like any TMPDIR drillbook may be given.
    mountpoint.chmod(0o1777)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


def fill(directory: Path, *, leave_pages: int) -> None:
    """Fill the filesystem of ``directory`` until only ``leave_pages`` pages are free."""
    filler = directory / ".filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as stream:
        while True:
            stream.write(b"\0" * PAGE)
    os.truncate(filler, max(0, filler.stat().st_size - leave_pages * PAGE))


def drillbook(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drillbook.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env={**os.environ, **(env or {})}, check=False)


def assert_no_traceback(proc: subprocess.CompletedProcess[str]) -> None:
    text = proc.stdout + proc.stderr
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


class TestFullOut:
    # 0 pages: the run directory cannot be prepared; 2: pytest's junit.xml cannot be written;
    # 3: results.json cannot; 4: the HTML report cannot (as measured on these machines' tmpfs).
    @pytest.mark.parametrize("leave_pages", [0, 2, 3, 4])
    def test_a_full_out_is_a_clear_error_and_no_report_is_truncated(
        self, tmpfs: Path, tmp_path: Path, leave_pages: int
    ) -> None:
        """`drillbook run --out FULL`: exit 1, one line naming the file, no traceback; every report
        file present is complete (results.json parses, junit.xml parses), no temp file is left."""
        features = tmp_path / "features"
        features.mkdir()
        (features / "empty.feature").write_text("Feature: x\n  Scenario: nothing checked\n")
        out = tmpfs / "out"
        fill(tmpfs, leave_pages=leave_pages)
        proc = drillbook("run", "--features", str(features), "--out", str(out))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert_no_traceback(proc)
        assert f"cannot write {out}/" in proc.stderr, proc.stderr
        assert "no space left on the device" in proc.stderr
        assert "point --out elsewhere" in proc.stderr
        for results in out.glob("*/results.json"):
            json.loads(results.read_text(encoding="utf-8"))  # complete, or it would not be here
        for junit in out.glob("*/junit.xml"):
            ET.parse(junit)  # noqa: S314 - this run's own file
        assert not list(out.glob("*/.*.tmp"))


class TestAtomicWrite:
    def test_a_failed_write_keeps_the_previous_file_and_names_path_and_phase(self, tmpfs: Path) -> None:
        """ENOSPC half-way: DiskError naming the file and the phase; the old content is intact."""
        target = tmpfs / "results.json"
        target.write_text('{"complete": true}\n')
        fill(tmpfs, leave_pages=1)
        with pytest.raises(DiskError) as caught:
            write_atomic(target, "x" * (64 * PAGE), phase="writing the run's results")
        assert str(target) in str(caught.value)
        assert "writing the run's results" in str(caught.value)
        assert caught.value.hint
        assert json.loads(target.read_text()) == {"complete": True}
        assert [p.name for p in tmpfs.iterdir()] == sorted(p.name for p in tmpfs.iterdir())
        assert not [p for p in tmpfs.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.integration
class TestFullTmpdir:
    def test_scratch_cluster_copy_into_a_full_tmpdir(self, tmpfs: Path, tmp_path: Path) -> None:
        """`verify backup` with TMPDIR full: the scratch cluster's data-dir copy fails naming the
        path under TMPDIR and the phase; no traceback, nothing started."""
        # The template data dir is cached outside TMPDIR; build it now, so what fails is the copy.
        template_datadir(default_cache_dir(), bindir=pgtools.bindir(), workdir=tmp_path)
        dump = tmp_path / "backup-20261201.dump"
        dump.write_bytes(b"PGDMP" + b"\0" * 64)
        # One page free: Python's tempfile probes TMPDIR with a small write and silently falls back
        # to /tmp when even that fails; a page passes the probe, and the data dir cannot fit.
        fill(tmpfs, leave_pages=1)
        proc = drillbook("verify", "backup", str(dump), env={"TMPDIR": str(tmpfs)})
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert_no_traceback(proc)
        assert "copying the scratch cluster's data directory into TMPDIR" in proc.stderr
        assert f"cannot write {tmpfs}/" in proc.stderr
        assert "point TMPDIR elsewhere" in proc.stderr
        assert not list(tmpfs.glob("drillbook-scratch-*/scratch-pgdata"))  # no half data dir left

    def test_restore_download_into_a_full_tmpdir(
        self, tmpfs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The backup's download into a full TMPDIR fails naming the file and the phase."""
        backups = tmp_path / "backups"
        backups.mkdir()
        (backups / "backup-20261201.dump").write_bytes(b"PGDMP" + os.urandom(3 * 1024 * 1024))
        scratch = LocalScratch.start()  # under the real TMPDIR: only the download goes to the tmpfs
        try:
            fill(tmpfs, leave_pages=4)
            # tempfile's documented setting (what TMPDIR sets at start-up), not a drillbook function.
            monkeypatch.setattr(tempfile, "tempdir", str(tmpfs))
            spec = StoreSpec(name="backups", url=str(backups))
            with RestoreDrill(spec, scratch) as drill, pytest.raises(DiskError) as caught:
                drill.run()
        finally:
            scratch.close()
        message = str(caught.value)
        assert "downloading backup backup-20261201.dump into TMPDIR" in message
        assert f"cannot write {tmpfs}/" in message
        assert "no space left on the device" in message
