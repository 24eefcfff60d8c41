"""End of ``trainonce run``: slim model, save + reload check, ONNX check, latency, report.

All files are made in ``RUN_DIR/.staging`` and moved into the run directory only when all passed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from .. import exporters
from ..report import (
    Comparison,
    compare_latency,
    comparison_markdown,
    plot_channels,
    plot_curves,
    plot_sparsity,
    write_report,
)
from .train import evaluate


def _max_diff(a: nn.Module, b: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((a.eval()(x) - b.eval()(x)).abs().max())


def finish(run_dir: Path, settings: dict, model, space, bundle, adapt, history, factory) -> dict:
    """Build, verify and save the slim model and the report; return the summary dict."""
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
    diff = _max_diff(slim, model, x1)
    slim_acc = evaluate(slim, bundle.test, adapt, cpu)

    staging = run_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "plots").mkdir(parents=True)
    trainonce.save(slim, staging / "slim")
    reloaded = trainonce.load(staging / "slim", factory)
    reload_diff = _max_diff(slim, reloaded, x1)
    if reload_diff > 1e-5:
        raise RuntimeError(f"the saved slim model reloads with different outputs ({reload_diff})")
    onnx_diff = exporters.export_onnx(slim, x1, staging / "model.onnx")

    xb = adapt(torch.stack([bundle.test[i][0] for i in range(min(32, len(bundle.test)))]))
    lat = {}
    for label, x in (("batch 1", x1), (f"batch {xb.shape[0]}", xb)):
        t = compare_latency({"dense": model, "slim": slim}, x)
        lat[label] = (t["dense"], t["slim"])
    n_params = (space.num_params(), sum(p.numel() for p in slim.parameters()))
    cmp = Comparison(n_params, (space.flops(), space.flops(keep)), (dense_acc, slim_acc), lat)

    groups = [g for g in space.groups if g.prunable]
    kept = [int(keep[g.offset : g.offset + g.size].sum()) for g in groups]
    plots = {
        "Loss and accuracy": plot_curves(history, staging / "plots" / "curves.png"),
        "Group sparsity and FLOPs kept": plot_sparsity(history, staging / "plots" / "sparsity.png"),
        "Kept channels per group": plot_channels(
            [g.name for g in groups],
            kept,
            [g.size for g in groups],
            staging / "plots" / "channels.png",
        ),
    }
    plots = {k: str(v.relative_to(staging)) for k, v in plots.items()}
    notes = [
        f"slim vs dense max |output difference|: {diff:.2e}; reloaded slim: {reload_diff:.2e}; "
        f"ONNX (onnxruntime) vs torch: {onnx_diff:.2e}",
        f"{sum(g.size for g in groups) - sum(kept)} of {sum(g.size for g in groups)} "
        "prunable channels removed",
    ]
    if hasattr(os, "getloadavg"):
        load = os.getloadavg()[0]
        notes.append(
            f"1-minute load average when timing: {load:.2f} on {os.cpu_count()} CPUs "
            "(latency is noisy when other work shares the machine)"
        )
    write_report(
        staging / "report.html",
        f"trainonce run: {settings['model']} on {settings['data']}",
        cmp,
        settings,
        plots,
        notes,
    )
    summary = {
        "params": list(cmp.params),
        "flops": list(cmp.flops),
        "test_accuracy": list(cmp.accuracy),
        "latency_s": {k: list(v) for k, v in lat.items()},
        "slim_max_diff": diff,
        "reload_max_diff": reload_diff,
        "onnx_max_diff": onnx_diff,
        "kept_per_group": dict(zip([g.name for g in groups], kept, strict=False)),
    }
    (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    (staging / "report.md").write_text(comparison_markdown(cmp) + "\n")
    for entry in staging.iterdir():
        dest = run_dir / entry.name
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        os.replace(entry, dest)
    staging.rmdir()
    return summary
