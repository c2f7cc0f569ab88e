"""Headless Chromium for the report's browser tests, and a dependency-free PNG reader.

:func:`screenshot` and :func:`dump_dom` run Debian's ``/usr/bin/chromium`` once,
headless, with a fresh profile directory that is removed afterwards, bounded by a
timeout (the whole process group is killed when it runs over). :func:`read_png`
decodes the 8-bit RGB/RGBA PNG Chromium writes into rows of ``(r, g, b)`` tuples
with :mod:`zlib` and :mod:`struct`, undoing every PNG filter type.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")

_FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",  # one CSS pixel is one PNG pixel
    "--force-color-profile=srgb",  # CSS colours land in the PNG unchanged
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class BrowserError(Exception):
    """Chromium did not produce what was asked (not installed, crashed, timed out)."""


def chromium_available() -> bool:
    """Whether the browser tests can run here."""
    return CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)


def screenshot(html_path: Path, png_path: Path, width: int = 1280, height: int = 2000,
               timeout: float = 60) -> Path:
    """Render ``html_path`` in headless Chromium and save a ``width``x``height`` PNG."""
    png_path = png_path.resolve()
    png_path.unlink(missing_ok=True)
    _run_chromium([f"--screenshot={png_path}", f"--window-size={width},{height}",
                   html_path.resolve().as_uri()], timeout=timeout)
    if not png_path.is_file() or png_path.stat().st_size == 0:
        raise BrowserError(f"chromium wrote no screenshot to {png_path}")
    return png_path


def dump_dom(html_path: Path, timeout: float = 60) -> str:
    """The DOM Chromium built for ``html_path``, serialised as HTML."""
    return _run_chromium(["--dump-dom", html_path.resolve().as_uri()], timeout=timeout)


def _run_chromium(args: list[str], *, timeout: float) -> str:
    if not chromium_available():
        raise BrowserError(f"{CHROMIUM} is not installed")
    profile = Path(tempfile.mkdtemp(prefix="drillbook-chromium-"))
    command = [str(CHROMIUM), *_FLAGS, f"--user-data-dir={profile}", *args]
    try:
        # A process group of its own: chromium forks helpers (zygote, renderer, gpu)
        # that must die with it on a timeout.
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True) as process:
            try:
                out, err = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
                raise BrowserError(f"chromium did not finish within {timeout}s: {command}") from exc
            finally:
                _kill_group(process.pid)
        if process.returncode != 0:
            raise BrowserError(
                f"chromium exited with {process.returncode}: "
                f"{err.decode('utf-8', 'replace')[-2000:]}"
            )
        return out.decode("utf-8", "replace")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    """Leave no chromium helper behind (they share the leader's process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass(frozen=True)
class Png:
    """A decoded image: ``rows[y][x]`` is an ``(r, g, b)`` tuple."""

    width: int
    height: int
    rows: list[list[tuple[int, int, int]]]


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk (the first chunk of every PNG)."""
    head = path.read_bytes()[:24]
    if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def read_png(path: Path) -> Png:
    """Decode an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    if data[:8] != _PNG_SIGNATURE:
        raise ValueError(f"{path} is not a PNG")
    offset = 8
    idat = bytearray()
    width = height = bit_depth = colour_type = interlace = -1
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        kind = data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        offset += 12 + length
        if kind == b"IHDR":
            width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    channels = {2: 3, 6: 4}.get(colour_type)
    if bit_depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"unsupported PNG: depth {bit_depth}, colour type {colour_type}, "
                         f"interlace {interlace}")
    raw = zlib.decompress(bytes(idat))
    stride = width * channels
    rows: list[list[tuple[int, int, int]]] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, channels)
        rows.append([(line[x], line[x + 1], line[x + 2]) for x in range(0, stride, channels)])
        previous = line
    return Png(width, height, rows)


def _unfilter(kind: int, line: bytearray, prior: bytearray, bpp: int) -> bytearray:
    """Undo one scanline's PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 0:
        return line
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = prior[i]
        if kind == 1:
            predictor = left
        elif kind == 2:
            predictor = up
        elif kind == 3:
            predictor = (left + up) // 2
        elif kind == 4:
            upper_left = prior[i - bpp] if i >= bpp else 0
            estimate = left + up - upper_left
            pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - upper_left)
            predictor = left if pa <= pb and pa <= pc else (up if pb <= pc else upper_left)
        else:
            raise ValueError(f"unknown PNG filter type {kind}")
        line[i] = (line[i] + predictor) & 0xFF
    return line
