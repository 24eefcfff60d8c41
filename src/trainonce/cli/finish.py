"""End of ``trainonce run``: slim model, save + reload check, ONNX check, latency, report.

All files are made in ``RUN_DIR/.staging`` and moved into the run directory only when all passed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import exporters
from ..atomic import replace_dir
from ..report import (
    Comparison,
    LayerRow,
    Report,
    compare_latency,
    layer_rows,
    markdown,
    plot_channels,
    plot_curves,
    plot_sparsity,
    write_report,
)
from ..report.facts import file_sizes, versions
from ..subnet.verify import within_tolerance
from .record import RunFacts
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


def _save_checked(pair: _Pair, staging: Path, factory, onnx: bool) -> tuple[float, float | None]:
    """Save the slim model and (``onnx``) its ONNX export; return (reload diff, ONNX diff or
    None)."""
    import trainonce

    trainonce.save(pair.slim, staging / "slim")
    reloaded = trainonce.load(staging / "slim", factory)
    reload_diff = _max_diff(pair.slim, reloaded, pair.x1)
    with torch.no_grad():
        same = within_tolerance(pair.slim.eval()(pair.x1), reloaded.eval()(pair.x1))
    if not same:
        raise RuntimeError(f"the saved slim model reloads with different outputs ({reload_diff})")
    if not onnx:
        return reload_diff, None
    return reload_diff, exporters.export_onnx(pair.slim, pair.x1, staging / "model.onnx")


def _latency_label(batch: int, threads: int) -> str:
    return f"batch {batch}, {threads} thread" + ("s" if threads > 1 else "")


def _latency_cases(x1: torch.Tensor, xb: torch.Tensor, table=None
                   ) -> list[tuple[str, torch.Tensor, int]]:
    """(label, input, threads) of every timing; with a latency ``table`` (CPU), also its own
    batch size and thread count, so that its prediction is shown beside a measurement."""
    cases = [(_latency_label(1, 1), x1, 1), (_latency_label(xb.shape[0], 1), xb, 1)]
    if table is not None and table.device == "cpu":
        label = _latency_label(table.batch_size, table.threads)
        if label not in {c[0] for c in cases}:
            x = x1.expand((table.batch_size,) + tuple(x1.shape[1:])).contiguous()
            cases.append((label, x, table.threads))
    n = torch.get_num_threads()
    # Only with cores to spare: on 2 shared cores a 2-thread timing mostly measures contention
    # (measured: IQR larger than the median, 10 s to time resnet8).
    if n >= 4:
        cases.append((_latency_label(xb.shape[0], n), xb, n))
    return cases


def _compare(pair: _Pair, space, bundle, adapt, baseline, table=None) -> Comparison:
    """Parameters, FLOPs, accuracy (dense-trained baseline vs slim) and latency, dense vs slim
    timed in alternating rounds, at batch 1 and 32."""
    xb = adapt(torch.stack([bundle.test[i][0] for i in range(min(32, len(bundle.test)))]))
    lat = {}
    for label, x, threads in _latency_cases(pair.x1, xb, table):
        t = compare_latency({"dense": pair.dense, "slim": pair.slim}, x, num_threads=threads)
        lat[label] = (t["dense"], t["slim"])
    n_params = (space.num_params(), sum(p.numel() for p in pair.slim.parameters()))
    base = baseline.accuracy if baseline is not None else None
    predicted = {}
    if table is not None:
        label = _latency_label(table.batch_size, table.threads)
        predicted[label] = (table.predict(space), table.predict(space, ~pair.keep))
    return Comparison(n_params, (space.flops(), space.flops(pair.keep)), (base, pair.accuracy[1]),
                      lat, pruned_accuracy=pair.accuracy[0], predicted=predicted)


def _plots(history: list[dict], rows: list[LayerRow], staging: Path, facts: RunFacts) -> dict:
    d = staging / "plots"
    d.mkdir()
    base = facts.baseline.history if facts.baseline is not None else None
    return {
        "Loss and accuracy (shaded: pruning phase)":
            plot_curves(history, d / "curves.png", facts.phases, base),
        "Group sparsity, FLOPs and parameters kept (shaded: pruning phase)":
            plot_sparsity(history, d / "sparsity.png", facts.phases),
        "Kept channels per layer, the most-cut first": plot_channels(
            [r.name for r in rows], [r.after for r in rows], [r.before for r in rows],
            d / "channels.png"),
    }


def _notes(diffs: dict[str, float], cmp: Comparison, rows: list[LayerRow]) -> list[str]:
    dense = sum(r.before for r in rows)
    notes = [
        f"the trained model before slimming (pruned groups at exactly zero): test accuracy "
        f"{cmp.pruned_accuracy:.2%}; slim vs it, max |output difference| {diffs['slim']:.2e}; "
        f"reloaded slim: {diffs['reload']:.2e}; ONNX (onnxruntime) vs torch: "
        + (f"{diffs['onnx']:.2e}" if diffs["onnx"] is not None else "not exported (--no-onnx)"),
        f"{dense - sum(r.after for r in rows)} of {dense} prunable channels removed "
        f"in {sum(r.after < r.before for r in rows)} of {len(rows)} layers",
    ]
    noisy = [k for k, (d, s) in cmp.latency.items()
             if abs(d.median - s.median) < (d.iqr + s.iqr) / 2]
    if noisy:
        notes.append(f"latency ({'; '.join(noisy)}): the dense-slim difference is within the "
                     "spread of the timings, so it is not a measured speed-up or slow-down")
    if hasattr(os, "getloadavg"):
        notes.append(
            f"1-minute load average when timing: {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
            "CPUs (latency is noisy when other work shares the machine)"
        )
    return notes


def _facts(facts: RunFacts, history: list[dict], run_dir: Path, staging: Path,
           finish_s: float) -> dict[str, str]:
    def took(seconds: float, steps: int, resumed: int) -> str:
        text = f"{seconds:.1f} s for {steps - resumed} steps"
        return text + (f" (this session, resumed at step {resumed})" if resumed else "")

    out = {"command": facts.command or "-"}
    steps = history[-1]["step"] if history else 0
    out["training, pruning run"] = took(facts.train_seconds, steps, facts.resumed_at)
    b = facts.baseline
    if b is not None:
        out["training, dense baseline"] = took(b.seconds, b.history[-1]["step"], b.resumed_at)
    out["slim, checks, export, latency (before this report)"] = f"{finish_s:.1f} s"
    out.update(file_sizes(run_dir, staging))
    out.update(versions())
    return out


def _publish(staging: Path, run_dir: Path) -> None:
    """Move every staged entry into the run directory; directories swap in whole."""
    for entry in staging.iterdir():
        dest = run_dir / entry.name
        if entry.is_dir():
            replace_dir(entry, dest)
        else:
            os.replace(entry, dest)
    staging.rmdir()


def finish(run_dir: Path, settings: dict, model, space, bundle, adapt, history, factory,
           facts: RunFacts | None = None, latency_table=None, onnx: bool = True) -> dict:
    """Build, verify and save the slim model and the report; return the summary dict.
    ``latency_table``: a latency target's table, whose predictions the report shows;
    ``onnx``: also write and check model.onnx."""
    t0 = time.perf_counter()
    facts = facts or RunFacts()
    pair = _slim(model, space, bundle, adapt, factory)
    staging = run_dir / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    reload_diff, onnx_diff = _save_checked(pair, staging, factory, onnx)
    cmp = _compare(pair, space, bundle, adapt, facts.baseline, latency_table)
    rows = layer_rows(space, pair.keep)
    plots = _plots(history, rows, staging, facts)
    diffs = {"slim": pair.diff, "reload": reload_diff, "onnx": onnx_diff}
    run_facts = _facts(facts, history, run_dir, staging, time.perf_counter() - t0)
    report = Report(
        title=f"trainonce run: {settings['model']} on {settings['data']}",
        comparison=cmp, layers=rows, plots=plots, base=staging, command=facts.command,
        facts=run_facts, settings=settings, notes=_notes(diffs, cmp, rows))
    write_report(staging / "report.html", report)
    summary = {
        "params": list(cmp.params),
        "flops": list(cmp.flops),
        "test_accuracy": [cmp.pruned_accuracy, cmp.accuracy[1]],
        "dense_baseline_accuracy": cmp.accuracy[0],
        "latency_s": {k: {"dense": asdict(d), "slim": asdict(s)}
                      for k, (d, s) in cmp.latency.items()},
        "predicted_latency_s": {k: {"dense": d, "slim": s}
                                for k, (d, s) in cmp.predicted.items()},
        "slim_max_diff": pair.diff,
        "reload_max_diff": reload_diff,
        "onnx_max_diff": onnx_diff,
        "pruning_phase_steps": list(facts.phases) if facts.phases else None,
        "kept_per_group": {r.group: r.after for r in rows},
        "layers": [asdict(r) for r in rows],
        "facts": run_facts,
    }
    (staging / "summary.json").write_text(json.dumps(summary, indent=2))
    (staging / "report.md").write_text(markdown(cmp, rows) + "\n")
    _publish(staging, run_dir)
    return summary
