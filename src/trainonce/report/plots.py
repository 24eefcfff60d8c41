"""Training plots as PNG files (matplotlib, Agg backend): curves, sparsity, kept channels.

Each function takes plain data (history records, per-group counts) and writes one figure.
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


def plot_curves(history: list[dict], path: Path) -> Path:
    """Training loss, training accuracy (smoothed) and test accuracy per epoch, over steps."""
    plt = _plt()
    steps = [r["step"] for r in history]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    a1.plot(steps, [r["loss"] for r in history], color="#bbb", lw=0.6, label="batch")
    a1.plot(steps, _smooth([r["loss"] for r in history]), color="C0", label="smoothed")
    a1.set(xlabel="step", ylabel="training loss", yscale="log")
    a1.legend(frameon=False)
    a2.plot(steps, _smooth([r["acc"] for r in history]), color="C0", label="train (smoothed)")
    ev = [r for r in history if "test_acc" in r]
    a2.plot([r["step"] for r in ev], [r["test_acc"] for r in ev], "o-", color="C3", label="test")
    a2.set(xlabel="step", ylabel="accuracy", ylim=(0, 1.02))
    a2.legend(frameon=False, loc="lower right")
    return _save(fig, path)


def plot_sparsity(history: list[dict], path: Path) -> Path:
    """Group sparsity, FLOPs kept and params kept over steps."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
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


def plot_channels(names: list[str], kept: list[int], sizes: list[int], path: Path) -> Path:
    """Horizontal bars: kept vs total ZIGs (channels) per prunable group."""
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(6.5, 0.8 + 0.28 * max(n, 1)))
    y = list(range(n))
    ax.barh(y, sizes, color="#ddd")
    ax.barh(y, kept, color="C2")
    short = [s if len(s) <= 32 else "..." + s[-29:] for s in names]
    ax.set_yticks(y, short, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="channels (ZIGs)", title="kept (green) of dense (grey) channels per group")
    ax.title.set_fontsize(9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    fig.clf()
    _plt().close(fig)
    return path
