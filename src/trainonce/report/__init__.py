"""The run report: an HTML page with the dense vs slim table, the run settings and the plots.

`write_report` takes plain numbers (see ``Comparison``) so it can be tested without training.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import atomic_write
from .latency import compare_latency
from .plots import plot_channels, plot_curves, plot_sparsity

__all__ = ["Comparison", "compare_latency", "plot_channels", "plot_curves", "plot_sparsity"]
__all__ += ["write_report"]


@dataclass
class Comparison:
    """Dense vs slim measurements; latency maps a label ("batch 1") to (dense s, slim s)."""

    params: tuple[int, int]
    flops: tuple[float, float]
    accuracy: tuple[float, float]
    latency: dict[str, tuple[float, float]] = field(default_factory=dict)


def _num(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _rows(c: Comparison) -> list[tuple[str, str, str, str]]:
    def ratio(d: float, s: float) -> str:
        return f"{s / d:.1%} of dense" if d else "-"

    rows = [
        ("parameters", _num(c.params[0]), _num(c.params[1]), ratio(*c.params)),
        ("FLOPs (MACs)", _num(c.flops[0]), _num(c.flops[1]), ratio(*c.flops)),
        (
            "test accuracy",
            f"{c.accuracy[0]:.2%}",
            f"{c.accuracy[1]:.2%}",
            f"{100 * (c.accuracy[1] - c.accuracy[0]):+.2f} pts",
        ),
    ]
    for label, (d, s) in c.latency.items():
        rows.append(
            (
                f"CPU latency, {label} (median)",
                f"{d * 1e3:.2f} ms",
                f"{s * 1e3:.2f} ms",
                f"speed-up {d / s:.2f}x" if s else "-",
            )
        )
    return rows


def comparison_markdown(c: Comparison) -> str:
    lines = ["| | dense | slim | change |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {s} | {r} |" for a, b, s, r in _rows(c)]
    return "\n".join(lines)


def write_report(
    path: Path,
    title: str,
    comparison: Comparison,
    settings: dict[str, object],
    plots: dict[str, str],
    notes: list[str] | None = None,
) -> Path:
    """Write a self-contained HTML report (plots referenced by relative path)."""
    e = html.escape
    table = "".join(
        f"<tr><th>{e(a)}</th><td>{e(b)}</td><td>{e(s)}</td><td>{e(r)}</td></tr>"
        for a, b, s, r in _rows(comparison)
    )
    conf = "".join(
        f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in settings.items()
    )
    figs = "".join(
        f'<figure><img src="{e(src)}" alt="{e(cap)}"><figcaption>{e(cap)}</figcaption></figure>'
        for cap, src in plots.items()
    )
    note_html = "".join(f"<li>{e(n)}</li>" for n in notes or [])
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}}
table{{border-collapse:collapse;margin:1rem 0}}
th,td{{border-bottom:1px solid #ddd;padding:.3rem .8rem;text-align:right}}
th{{text-align:left;font-weight:600}} figure{{margin:1.5rem 0}} img{{max-width:100%}}
figcaption{{color:#555;font-size:.9rem}}
</style></head><body>
<h1>{e(title)}</h1>
<h2>Dense vs slim</h2>
<p>The dense model is the trained network with its pruned groups at exactly zero; the slim model
has them removed. Latency: both models timed in the same process, calls interleaved, median.</p>
<table><tr><th></th><th>dense</th><th>slim</th><th>change</th></tr>{table}</table>
<ul>{note_html}</ul>
<h2>Plots</h2>{figs}
<h2>Settings</h2><table>{conf}</table>
</body></html>
"""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(page))
