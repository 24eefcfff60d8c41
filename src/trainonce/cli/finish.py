"""End of ``trainonce run``: slim model, save + reload check, ONNX check, latency, report.

All files are made in ``RUN_DIR/.staging`` and moved into the run directory only when all passed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import exporters
from ..atomic import replace_dir
from ..report import (
    Comparison,
    compare_latency,
    comparison_markdown,
    plot_channels,
    plot_curves,
    plot_sparsity,
    write_report,
)
from ..subnet.verify import within_tolerance
from .train import evaluate


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


@dataclass
class _Pair:
    """The dense model (pruned groups at zero) and its slim version, checked against it."""

    dense: nn.Module
    slim: nn.Module
    keep: torch.Tensor  # bool [num_zigs], taken before slimming (which may work in place)
    x1: torch.Tensor  # one test input
    diff: float  # max |slim - dense| on x1
    accuracy: tuple[float, float]


def _slim(model, space, bundle, adapt, factory) -> _Pair:
    import trainonce

    cpu = torch.device("cpu")
    model = model.eval().to(cpu)
    keep = ~space.zero_mask()
    dense_acc = evaluate(model, bundle.test, adapt, cpu)
    x1 = adapt(bundle.test[0][0].unsqueeze(0))
    dense_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    slim = trainonce.construct_subnet(model, space).eval()
    if any(v.shape != model.state_dict()[k].shape for k, v in dense_state.items()):
        model = factory()  # construct_subnet slimmed in place: rebuild the dense model
        model.load_state_dict(dense_state)
        model.eval()
    slim_acc = evaluate(slim, bundle.test, adapt, cpu)
    return _Pair(model, slim, keep, x1, _max_diff(slim, model, x1), (dense_acc, slim_acc))


def _save_checked(pair: _Pair, staging: Path, factory) -> tuple[float, float]:
    """Save the slim model and its ONNX export; return (reload diff, ONNX diff)."""
    import trainonce

    trainonce.save(pair.slim, staging / "slim")
    reloaded = trainonce.load(staging / "slim", factory)
    reload_diff = _max_diff(pair.slim, reloaded, pair.x1)
    with torch.no_grad():
        same = within_tolerance(pair.slim.eval()(pair.x1), reloaded.eval()(pair.x1))
    if not same:
        raise RuntimeError(f"the saved slim model reloads with different outputs ({reload_diff})")
    return reload_diff, exporters.export_onnx(pair.slim, pair.x1, staging / "model.onnx")


def _compare(pair: _Pair, space, bundle, adapt) -> Comparison:
    """Parameters, FLOPs, accuracy and interleaved latency at batch 1 and 32, dense vs slim."""
    xb = adapt(torch.stack([bundle.test[i][0] for i in range(min(32, len(bundle.test)))]))
    lat = {}
    for label, x in (("batch 1", pair.x1), (f"batch {xb.shape[0]}", xb)):
        t = compare_latency({"dense": pair.dense, "slim": pair.slim}, x)
        lat[label] = (t["dense"], t["slim"])
    n_params = (space.num_params(), sum(p.numel() for p in pair.slim.parameters()))
    return Comparison(n_params, (space.flops(), space.flops(pair.keep)), pair.accuracy, lat)


def _kept_channels(space, keep: torch.Tensor) -> dict[str, tuple[int, int]]:
    """Per prunable group: (kept, dense) channels."""
    return {
        g.name: (int(keep[g.offset : g.offset + g.size].sum()), g.size)
        for g in space.groups
        if g.prunable
    }


def _plots(history: list[dict], kept: dict[str, tuple[int, int]], staging: Path) -> dict:
    d = staging / "plots"
    d.mkdir()
    names = list(kept)
    plots = {
        "Loss and accuracy": plot_curves(history, d / "curves.png"),
        "Group sparsity and FLOPs kept": plot_sparsity(history, d / "sparsity.png"),
        "Kept channels per group": plot_channels(
            names, [kept[n][0] for n in names], [kept[n][1] for n in names], d / "channels.png"
        ),
    }
    return {k: str(v.relative_to(staging)) for k, v in plots.items()}


def _notes(diffs: dict[str, float], kept: dict[str, tuple[int, int]]) -> list[str]:
    dense = sum(n for _, n in kept.values())
    notes = [
        f"slim vs dense max |output difference|: {diffs['slim']:.2e}; reloaded slim: "
        f"{diffs['reload']:.2e}; ONNX (onnxruntime) vs torch: {diffs['onnx']:.2e}",
        f"{dense - sum(k for k, _ in kept.values())} of {dense} prunable channels removed",
    ]
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        notes.append(
            f"1-minute load average when timing: {load:.2f} on {os.cpu_count()} CPUs "
            "(latency is noisy when other work shares the machine)"
        )
    return notes


def _publish(staging: Path, run_dir: Path) -> None:
    """Move every staged entry into the run directory; directories swap in whole."""
    for entry in staging.iterdir():
        dest = run_dir / entry.name
        if entry.is_dir():
            replace_dir(entry, dest)
        else:
            os.replace(entry, dest)
    staging.rmdir()


def finish(run_dir: Path, settings: dict, model, space, bundle, adapt, history, factory) -> dict:
    """Build, verify and save the slim model and the report; return the summary dict."""
    pair = _slim(model, space, bundle, adapt, factory)
    staging = run_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    reload_diff, onnx_diff = _save_checked(pair, staging, factory)
    cmp = _compare(pair, space, bundle, adapt)
    kept = _kept_channels(space, pair.keep)
    plots = _plots(history, kept, staging)
    diffs = {"slim": pair.diff, "reload": reload_diff, "onnx": onnx_diff}
    title = f"trainonce run: {settings['model']} on {settings['data']}"
    write_report(staging / "report.html", title, cmp, settings, plots, _notes(diffs, kept))
    summary = {
        "params": list(cmp.params),
        "flops": list(cmp.flops),
        "test_accuracy": list(cmp.accuracy),
        "latency_s": {k: list(v) for k, v in cmp.latency.items()},
        "slim_max_diff": pair.diff,
        "reload_max_diff": reload_diff,
        "onnx_max_diff": onnx_diff,
        "kept_per_group": {name: k for name, (k, _) in kept.items()},
    }
    (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    (staging / "report.md").write_text(comparison_markdown(cmp) + "\n")
    _publish(staging, run_dir)
    return summary
