"""The run report without training: per-layer rows, the self-contained HTML page (parsed, moved),
pruning phases on the plots, and latency through ``torch.utils.benchmark``."""

import math
import shutil

import numpy as np
import pytest
import torch
from htmlcheck import check_self_contained
from torch import nn

import trainonce
from trainonce.report import (
    Comparison,
    Report,
    Timing,
    compare_latency,
    comparison_rows,
    layer_rows,
    markdown,
    plot_channels,
    plot_curves,
    plot_sparsity,
    write_report,
)
from trainonce.zoo import build_model


@pytest.fixture(scope="module")
def space():
    model = build_model("resnet8", 10, 1).model.eval()
    return trainonce.analyze(model, (torch.randn(1, 1, 8, 8),))


def _group(space, name):
    return next(g for g in space.groups if g.name == name)


def _keep_zeroing(space, cuts):
    """Keep mask with the first ``n`` ZIGs of each named group removed."""
    keep = torch.ones(space.num_zigs, dtype=torch.bool)
    for name, n in cuts.items():
        g = _group(space, name)
        keep[g.offset : g.offset + n] = False
    return keep


def test_layer_rows_name_modules_count_channels_and_sort(space):
    keep = _keep_zeroing(space, {"layer1.conv1.weight[0] +3": 12, "stem.0.weight[0] +8": 4})
    rows = layer_rows(space, keep)
    assert len(rows) == sum(g.prunable for g in space.groups)
    by_group = {r.group: r for r in rows}
    first = by_group["layer1.conv1.weight[0] +3"]
    assert first.modules == ("layer1.conv1",) and first.name == "layer1.conv1"
    assert (first.before, first.after, first.unit) == (16, 4, "channels")
    stem = by_group["stem.0.weight[0] +8"]  # the residual stream: two convs produce it
    assert stem.modules == ("stem.0", "layer1.conv2") and (stem.before, stem.after) == (16, 12)
    assert [r.group for r in rows[:2]] == [first.group, stem.group]  # most-cut first
    assert [r.kept_share for r in rows] == sorted(r.kept_share for r in rows)
    assert all(r.after == r.before for r in rows[2:])
    # layer3's groups touch no op that reads a cut channel; layer2.shortcut.0 reads the stem's
    for r in rows:
        if r.modules[0].startswith("layer3"):
            assert r.flops[0] == r.flops[1] and r.params[0] == r.params[1]
        else:
            assert r.flops[1] < r.flops[0]


def test_layer_costs_of_a_lone_cut_equal_the_model_drop(space):
    """With one group cut, what its row says it lost is what the whole model lost."""
    name = "layer2.conv1.weight[0] +3"
    keep = _keep_zeroing(space, {name: 20})
    row = next(r for r in layer_rows(space, keep) if r.group == name)
    assert row.flops[1] < row.flops[0]
    assert math.isclose(row.flops[0] - row.flops[1], space.flops() - space.flops(keep))
    assert math.isclose(row.params[0] - row.params[1],
                        space.num_params() - space.num_params(keep))


def _history(n=60):
    out = []
    for s in range(1, n + 1):
        rec = {"step": s, "loss": 2.0 / s**0.5, "acc": min(1.0, s / n + 0.1)}
        if s % 5 == 0:
            sp = min(0.4, max(0.0, (s - 10) / 60))
            rec.update(group_sparsity=sp, flops_kept=1 - sp, params_kept=1 - sp / 2)
        if s % 20 == 0:
            rec["test_acc"] = 0.5 + s / (3 * n)
        out.append(rec)
    return out


def _shaded_pixels(png):
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    shade = np.array([248, 238, 216])  # #f4e3c1 at alpha 0.6 over white
    return int((np.abs(rgb - shade).max(axis=2) <= 6).sum())


def test_plots_shade_the_pruning_phase(tmp_path):
    plain = plot_sparsity(_history(), tmp_path / "a.png")
    marked = plot_sparsity(_history(), tmp_path / "b.png", phases=(10, 34))
    assert _shaded_pixels(plain) == 0 and _shaded_pixels(marked) > 2000
    curves = plot_curves(_history(), tmp_path / "c.png", (10, 34), baseline=_history())
    assert _shaded_pixels(curves) > 4000  # both panels


def _report(space, tmp_path):
    keep = _keep_zeroing(space, {"layer1.conv1.weight[0] +3": 12})
    rows = layer_rows(space, keep)
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    plots = {
        "curves": plot_curves(_history(), run / "plots" / "curves.png", (10, 34), _history()),
        "sparsity": plot_sparsity(_history(), run / "plots" / "sparsity.png", (10, 34)),
        "channels": plot_channels([r.name for r in rows], [r.after for r in rows],
                                  [r.before for r in rows], run / "plots" / "channels.png"),
    }
    t = Timing(1.5e-3, 2e-4, 40), Timing(1.0e-3, 1e-4, 50)
    cmp = Comparison((77754, 61091), (9.3e6, 4.6e6), (0.9833, 0.961), {"batch 1, 1 thread": t},
                     pruned_accuracy=0.961)
    report = Report("trainonce run: resnet8 on digits", cmp, rows, plots, base=run,
                    command="trainonce run --data digits --epochs 2",
                    facts={"torch": torch.__version__, "training": "1.2 s"},
                    settings={"lr": 0.05}, notes=["<b>escaped</b>"])
    return write_report(run / "report.html", report), rows


def test_report_is_self_contained_and_survives_a_move(space, tmp_path):
    path, rows = _report(space, tmp_path)
    elsewhere = tmp_path / "mailed" / "report.html"
    elsewhere.parent.mkdir()
    shutil.move(path, elsewhere)
    shutil.rmtree(tmp_path / "run")  # the plots directory is gone too
    page = elsewhere.read_text(encoding="utf-8")
    images, text = check_self_contained(page)
    assert len(images) == 3
    assert "-2.23 pts" in text and "98.33%" in text  # slim vs the dense-trained baseline
    assert "1.50 ms ± 0.10" in text and "speed-up 1.50x" in text
    assert "trainonce run --data digits --epochs 2" in text and torch.__version__ in text
    assert "layer1.conv1" in text and "16 -> 4 (25%)" in text
    assert "<b>escaped</b>" in text and "<b>" not in page
    assert page.index("layer1.conv1") < page.index("layer3.conv2")  # most-cut first
    assert "| layer1.conv1 |" in markdown(_cmp_only(), rows)


def _cmp_only():
    return Comparison((10, 5), (10.0, 5.0), (None, 0.9))


def test_accuracy_row_without_baseline_says_so():
    rows = {r[0]: r for r in comparison_rows(_cmp_only())}
    assert rows["test accuracy"][1].startswith("not trained") and rows["test accuracy"][3] == "-"


def test_latency_tells_models_apart():
    torch.manual_seed(0)
    lin = nn.Linear(256, 256)
    one, eight = nn.Sequential(lin), nn.Sequential(*[lin] * 8)
    t = compare_latency({"one": one, "eight": eight}, torch.randn(64, 256), rounds=4,
                        min_run_time=0.02)
    assert t["one"].blocks >= 4 and t["eight"].blocks >= 4
    assert t["one"].iqr >= 0 and 0 < t["one"].median < t["eight"].median


def test_an_erased_structure_is_one_row():
    """Erasing mode: a whole residual branch is one row, named as its group, kept or removed,
    and what it loses is what the model loses."""
    from trainonce.report.layer_rows import STRUCTURE

    model = build_model("resnet8", 10, 1).model.eval()
    space = trainonce.analyze(model, (torch.randn(1, 1, 8, 8),), mode="erase")
    keep = _keep_zeroing(space, {"layer1.{conv1,bn1,conv2,bn2}": 1})
    rows = layer_rows(space, keep)
    first = rows[0]
    assert (first.name, first.unit, first.before, first.after) == (
        "layer1.{conv1,bn1,conv2,bn2}", STRUCTURE, 1, 0)
    assert all(r.after == 1 for r in rows[1:])
    assert math.isclose(first.flops[0] - first.flops[1], space.flops() - space.flops(keep))
    assert "| layer1.{conv1,bn1,conv2,bn2} | layer1.{conv1,bn1,conv2,bn2} | whole structure | " \
        "removed |" in markdown(_cmp_only(), rows)
