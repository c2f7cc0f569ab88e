"""The HTML report as a PDF, for GRC tools that accept only PDF: printed by headless Chromium.

No PDF library re-implements the report: the one-page HTML report is what is
printed, so the PDF says exactly what the report says. Chromium is Debian's
``chromium`` package (``./bootstrap`` installs it for the tests); without it the
export stops with a hint instead of writing anything.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from checks.errors import DrillbookError

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# As root Chromium needs --no-sandbox; the networking flags keep it from calling out on a closed network.
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-extensions", "--no-pdf-header-footer")
TIMEOUT_S = 60.0


class PdfError(DrillbookError):
    """The PDF could not be printed (no Chromium, a crash, a timeout)."""

    default_hint = "install Debian's `chromium` package (apt-get install chromium), or export the HTML"


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH."""
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def html_to_pdf(html: Path, pdf: Path, *, browser: str | None = None, timeout_s: float = TIMEOUT_S) -> Path:
    """Print ``html`` to ``pdf`` with headless Chromium; raise :class:`PdfError` naming what failed."""
    binary = browser or find_chromium()
    if binary is None:
        raise PdfError("no Chromium found on PATH to print the report to PDF")
    if not html.is_file():
        raise PdfError(f"{html} does not exist: nothing to print", hint="export a run that wrote report.html")
    pdf = pdf.resolve()
    pdf.parent.mkdir(parents=True, exist_ok=True)
    pdf.unlink(missing_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="drillbook-pdf-"))
    command = [binary, *_FLAGS, f"--user-data-dir={profile}", f"--print-to-pdf={pdf}",
               html.resolve().as_uri()]
    try:
        # A process group of its own: Chromium's helpers must die with it.
        try:
            started = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                       start_new_session=True)
        except OSError as exc:
            raise PdfError(f"cannot start {binary}: {exc.strerror}") from exc
        with started as process:
            try:
                _, err = process.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise PdfError(f"Chromium did not print {html.name} within {timeout_s:.0f}s") from exc
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    if process.returncode != 0 or not pdf.is_file() or not pdf.read_bytes().startswith(b"%PDF-"):
        tail = err.decode("utf-8", "replace").strip().splitlines()[-3:] if err else []
        raise PdfError(f"Chromium wrote no PDF (exit {process.returncode}): {' | '.join(tail)}")
    return pdf
