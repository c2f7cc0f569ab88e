"""Small inline charts: a series of measurements against a limit, scaled into an SVG box.

:func:`scale` is pure geometry (no markup): one slot per run along x, oldest left,
the value up the y axis on a scale from ``min(0, lowest value)`` to the larger of the
highest value and the limit, so the limit line is always inside the box and a value
creeping towards it shows as a line climbing towards it. A missing measurement (the
drill errored, or did not run then) keeps its slot and leaves a gap; a value that is
not a finite number counts as missing. The template draws the result (``fleet.html.j2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The box, in CSS pixels: wide enough for a dozen runs, as tall as two lines of table text.
WIDTH = 120
HEIGHT = 28
# Room around the plot so a point marker at the edge is drawn whole.
PAD = 3.0


@dataclass(frozen=True)
class ChartPoint:
    """One measurement placed in the box; ``over`` when it exceeds the limit."""

    slot: int
    x: float
    y: float
    value: float
    over: bool


@dataclass(frozen=True)
class Sparkline:
    """A scaled series: polyline segments (split at gaps), the markers to draw, and the limit line."""

    width: int
    height: int
    points: tuple[ChartPoint, ...]
    segments: tuple[tuple[ChartPoint, ...], ...]
    markers: tuple[ChartPoint, ...]
    limit_y: float | None
    low: float
    high: float
    slots: int

    @property
    def empty(self) -> bool:
        """Nothing was measured in any slot."""
        return not self.points

    def polyline(self, segment: tuple[ChartPoint, ...]) -> str:
        """The ``points`` attribute of an SVG polyline for one segment."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in segment)


def _finite(value: float | None) -> float | None:
    if value is None or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def _fraction(value: float, low: float, high: float) -> float:
    """Where ``value`` lies between ``low`` and ``high`` (0..1), without overflowing on huge spans."""
    # Halving both sides keeps the span finite for any pair of finite doubles.
    span = high / 2 - low / 2
    if span <= 0:
        return 0.0
    return min(1.0, max(0.0, (value / 2 - low / 2) / span))


def scale(values: Sequence[float | None], limit: float | None, *, width: int = WIDTH,
          height: int = HEIGHT, pad: float = PAD) -> Sparkline:
    """Place ``values`` (oldest first, None = not measured) and ``limit`` in a ``width`` x ``height`` box.

    A value strictly above the limit is ``over``. Markers are drawn for the last
    measurement, for every value over the limit, and for points with no neighbour (a
    polyline of one point draws nothing).
    """
    clean = [_finite(v) for v in values]
    bound = _finite(limit)
    known = [v for v in clean if v is not None]
    low = min([0.0, *known])
    high = max([*known, *([bound] if bound is not None else [])], default=0.0)
    if high <= low:
        # All zero (or nothing): any positive span puts the points on the floor of the box.
        high = low + 1.0
    inner_w = max(0.0, width - 2 * pad)
    inner_h = max(0.0, height - 2 * pad)
    slots = len(clean)
    step = inner_w / (slots - 1) if slots > 1 else 0.0

    def y_of(value: float) -> float:
        return pad + inner_h * (1.0 - _fraction(value, low, high))

    points: list[ChartPoint] = []
    segments: list[tuple[ChartPoint, ...]] = []
    current: list[ChartPoint] = []
    for slot, value in enumerate(clean):
        if value is None:
            if current:
                segments.append(tuple(current))
            current = []
            continue
        x = pad + step * slot if slots > 1 else width / 2
        point = ChartPoint(slot=slot, x=x, y=y_of(value), value=value,
                           over=bound is not None and value > bound)
        points.append(point)
        current.append(point)
    if current:
        segments.append(tuple(current))
    markers = sorted(
        {p for seg in segments for p in seg if len(seg) == 1 or p.over} | ({points[-1]} if points else set()),
        key=lambda p: p.slot,
    )
    return Sparkline(
        width=width, height=height, points=tuple(points),
        segments=tuple(s for s in segments if len(s) > 1), markers=tuple(markers),
        limit_y=None if bound is None else y_of(bound), low=low, high=high, slots=slots,
    )
