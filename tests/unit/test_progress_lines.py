"""Progress lines said from several threads at once come out whole, one per line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

THREADS, LINES = 6, 40

CHATTY = f'''
import threading

from drillbook.plugin import session_of


def test_threads_say_at_once(request):
    drill = session_of(request.config)
    start = threading.Barrier({THREADS})

    def talk(n):
        start.wait()
        for i in range({LINES}):
            drill.say(f"starting service-{{n}} line-{{i}} (image:{{n}})")

    threads = [threading.Thread(target=talk, args=(n,)) for n in range({THREADS})]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
'''


def test_concurrent_progress_lines_do_not_interleave(tmp_path: Path) -> None:
    (tmp_path / "test_chatty.py").write_text(CHATTY, encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "drillbook.plugin", "--drillbook-progress",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-c", str(tmp_path / "pytest.ini"),
         str(tmp_path / "test_chatty.py")],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = [line for line in proc.stdout.splitlines() if "starting service-" in line]
    expected = {f"starting service-{n} line-{i} (image:{n})" for n in range(THREADS) for i in range(LINES)}
    assert sorted(said) == sorted(expected)
