"""Training plots as PNG files (matplotlib, Agg backend): curves, sparsity, kept channels.

Each function takes plain data (history records, per-layer counts) and writes one figure;
``phases`` (step where pruning starts, step where it ends) shades the pruning phase.
"""

from __future__ import annotations

from pathlib import Path

from ..data.optional import require


def _plt():
    mpl = require("matplotlib", "the report plots")
    mpl.use("Agg", force=True)
    return require("matplotlib.pyplot", "the report plots")


def _smooth(values: list[float], k: int = 20) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= k:
            acc -= values[i - k]
        out.append(acc / min(i + 1, k))
    return out


def _mark_phases(ax, phases: tuple[int, int] | None, label: bool = True) -> None:
    """Shade the pruning phase [start, end) and draw its two boundaries."""
    if phases is None:
        return
    start, end = phases
    ax.axvspan(start, end, color="#f4e3c1", alpha=0.6, lw=0, zorder=0,
               label="pruning phase" if label else None)
    for x in (start, end):
        ax.axvline(x, color="#b8860b", lw=0.8, ls="--", zorder=1)


def plot_curves(
    history: list[dict],
    path: Path,
    phases: tuple[int, int] | None = None,
    baseline: list[dict] | None = None,
) -> Path:
    """Training loss, training accuracy (smoothed) and test accuracy per epoch, over steps;
    with ``baseline`` (the dense model's history, same recipe) drawn dashed beside them."""
    plt = _plt()
    steps = [r["step"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    a1.plot(steps, [r["loss"] for r in history], color="#bbb", lw=0.6, label="batch")
    a1.plot(steps, _smooth([r["loss"] for r in history]), color="C0", label="smoothed")
    a2.plot(steps, _smooth([r["acc"] for r in history]), color="C0", label="train (smoothed)")
    ev = [r for r in history if "test_acc" in r]
    a2.plot([r["step"] for r in ev], [r["test_acc"] for r in ev], "o-", color="C3", label="test")
    if baseline:
        bsteps = [r["step"] for r in baseline]
        a1.plot(bsteps, _smooth([r["loss"] for r in baseline]), color="k", ls="--", lw=1,
                label="dense baseline")
        bev = [r for r in baseline if "test_acc" in r]
        a2.plot([r["step"] for r in bev], [r["test_acc"] for r in bev], "s--", color="k",
                ms=3, lw=1, label="dense baseline test")
    _mark_phases(a1, phases)
    _mark_phases(a2, phases, label=False)
    a1.set(xlabel="step", ylabel="training loss", yscale="log")
    a1.legend(frameon=False, fontsize=8)
    a2.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02))
    a2.legend(frameon=False, loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_sparsity(history: list[dict], path: Path, phases: tuple[int, int] | None = None) -> Path:
    """Group sparsity, FLOPs kept and params kept over steps."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    _mark_phases(ax, phases)
    recs = [r for r in history if "group_sparsity" in r]
    steps = [r["step"] for r in recs]
    for key, label in (
        ("group_sparsity", "group sparsity"),
        ("flops_kept", "FLOPs kept"),
        ("params_kept", "params kept"),
    ):
        if recs and key in recs[0]:
            ax.plot(steps, [r[key] for r in recs], label=label)
    ax.set(xlabel="step", ylabel="fraction", ylim=(0, 1.02))
    ax.legend(frameon=False)
    return _save(fig, path)


def plot_channels(
    names: list[str], kept: list[int], sizes: list[int], path: Path, max_rows: int = 60
) -> Path:
    """Horizontal bars: kept vs dense channels per layer (``names``: module names), in the
    order given; beyond ``max_rows`` the rest is left out and the title says so."""
    plt = _plt()
    total = len(names)
    names, kept, sizes = names[:max_rows], kept[:max_rows], sizes[:max_rows]
    n = len(names)
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.28 * max(n, 1)))
    y = list(range(n))
    ax.barh(y, sizes, color="#ddd")
    ax.barh(y, kept, color="C2")
    for yi, k, s in zip(y, kept, sizes):
        ax.text(s, yi, f" {k}/{s}", va="center", fontsize=7)
    ax.set_xlim(0, 1.15 * max(sizes, default=1))
    short = [s if len(s) <= 44 else "..." + s[-41:] for s in names]
    ax.set_yticks(y, short, fontsize=7)
    ax.invert_yaxis()
    more = f"; first {n} of {total} layers" if total > n else ""
    ax.set(xlabel="channels (ZIGs)", title=f"kept (green) of dense (grey) channels{more}")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    fig.clf()
    _plt().close(fig)
    return path
