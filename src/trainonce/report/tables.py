"""The report's numbers as table rows: dense vs slim (``Comparison``) and the per-layer table.

Plain strings, shared by the HTML page and ``report.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..space.summary import human
from .latency import Timing
from .layer_rows import STRUCTURE, LayerRow


@dataclass
class Comparison:
    """Dense vs slim. ``accuracy``: (dense model trained with the same recipe, or None when no
    baseline was trained; slim model). ``pruned_accuracy``: the trained model before slimming
    (the slim model's own weights, so it should equal the slim accuracy). ``latency`` maps a
    label ("batch 1, 1 thread") to (dense, slim) timings; ``predicted`` a label to the
    (dense, slim) seconds the run's latency table predicts (a latency target only)."""

    params: tuple[int, int]
    flops: tuple[float, float]
    accuracy: tuple[float | None, float]
    latency: dict[str, tuple[Timing, Timing]] = field(default_factory=dict)
    pruned_accuracy: float | None = None
    predicted: dict[str, tuple[float, float]] = field(default_factory=dict)


def _share(dense: float, kept: float) -> str:
    return f"{kept / dense:.1%}" if dense else "-"


def comparison_rows(c: Comparison) -> list[tuple[str, str, str, str]]:
    """(what, dense, slim, change) rows."""
    rows = [
        ("parameters", human(c.params[0]), human(c.params[1]), _share(*c.params) + " of dense"),
        ("FLOPs (MACs)", human(c.flops[0]), human(c.flops[1]), _share(*c.flops) + " of dense"),
    ]
    base, slim = c.accuracy
    if base is None:
        rows.append(("test accuracy", "not trained (--dense-baseline)", f"{slim:.2%}", "-"))
    else:
        rows.append(
            ("test accuracy", f"{base:.2%}", f"{slim:.2%}", f"{100 * (slim - base):+.2f} pts")
        )
    for label, (d, s) in c.latency.items():
        speed = f"speed-up {d.median / s.median:.2f}x" if s.median else "-"
        rows.append((f"CPU latency, {label}", d.text(), s.text(), speed))
        if label in c.predicted:  # the latency table's prediction beside the measurement
            pd, ps = c.predicted[label]
            rows.append((f"predicted latency, {label}", f"{pd * 1e3:.2f} ms",
                         f"{ps * 1e3:.2f} ms", f"{ps / pd:.1%} of dense (target's table)"))
    return rows


def layer_table(rows: list[LayerRow]) -> list[tuple[str, str, str, str, str, str]]:
    """(layer, group, unit, before -> after, FLOPs kept, params kept) per prunable group."""
    return [
        (
            r.name,
            r.group,
            r.unit,
            ("kept" if r.after else "removed") if r.unit == STRUCTURE
            else f"{r.before} -> {r.after} ({r.kept_share:.0%})",
            _share(*r.flops),
            _share(*r.params),
        )
        for r in rows
    ]


LAYER_HEADER = ("layer (producing modules)", "group", "unit", "before -> after", "FLOPs kept",
                "params kept")


def markdown(c: Comparison, layers: list[LayerRow] | None = None) -> str:
    """The dense vs slim table, then the per-layer table, as Markdown."""
    lines = ["| | dense | slim | change |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {s} | {r} |" for a, b, s, r in comparison_rows(c)]
    if layers:
        lines += ["", "| " + " | ".join(LAYER_HEADER) + " |", "|---|---|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(row) + " |" for row in layer_table(layers)]
    return "\n".join(lines)
