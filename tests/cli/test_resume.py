"""``run --resume`` continues bit for bit, keeps the recorded settings, and runs no code that
only a run directory names (nor does ``export``)."""

import json

import pytest
import torch

import trainonce
from trainonce.cli.main import main
from trainonce.cli.setup import RunConfig, save_config

# 8-channel layers: --align 1, or the CLI's default alignment would keep them whole
COMMON = ["--model", "factories:tiny_dropout_cnn", "--align", "1", "--no-onnx", "--epochs", "2",
          "--batch-size", "64"]


def _state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def _assert_same(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("optimizer", [[], ["--optimizer", "ato"]])
def test_resume_is_bit_exact(tmp_path, monkeypatch, capsys, optimizer):
    """Default cosine LR, a model with dropout, stopped mid-epoch: the resumed run ends with
    the very weights, optimizer state and losses of the uninterrupted one (ATO: stopped in its
    controller phase, steps 1..3 of 6: 5% of the data is held out for its loss_fn)."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    argv = ["run", *COMMON, *optimizer, "--no-progress"]
    assert main([*argv, "--data", "datafns:small_digits", "--out", str(whole)]) == 0
    monkeypatch.delenv("TRAINONCE_TEST_INTERRUPTED", raising=False)
    monkeypatch.setenv("TRAINONCE_TEST_AT", "3")
    data = ["--data", "datafns:interrupting_digits"]
    assert main([*argv, *data, "--out", str(cut)]) == 130
    out = capsys.readouterr().out
    assert f"--resume {cut} --model factories:tiny_dropout_cnn {data[0]} {data[1]}" in out
    assert _state(cut)["step"] == 3
    lr_mid = _state(cut)["optimizer"]["param_groups"][0]["lr"]
    assert 0 < lr_mid < 0.05  # the cosine schedule had decayed when it stopped
    resume = ["run", "--resume", str(cut), "--model", "factories:tiny_dropout_cnn", *data,
              "--no-onnx"]
    assert main([*resume, "--no-progress"]) == 0
    a, b = _state(whole), _state(cut)
    total = json.loads((whole / "config.json").read_text())["info"]["total_steps"]
    assert a["step"] == b["step"] == total == (8 if not optimizer else 6)  # ATO: 5% held out
    _assert_same(a["model"], b["model"], "model")
    _assert_same(a["optimizer"], b["optimizer"], "optimizer")
    _assert_same(a["scheduler"], b["scheduler"], "scheduler")
    assert [r["loss"] for r in a["history"]] == [r["loss"] for r in b["history"]]


@pytest.mark.parametrize(
    "extra",
    [
        ["--epochs", "3"],
        ["--lr", "0.1"],
        ["--lr-schedule", "constant"],
        ["--seed", "1"],
        ["--target-flops", "0.3"],
        ["--out", "elsewhere"],
    ],
)
def test_resume_refuses_training_options(tmp_path, capsys, extra):
    assert main(["run", "--resume", str(tmp_path), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{extra[0]} cannot be combined with --resume" in err, err


def _recorded_run(tmp_path, model="resnet8", data="digits"):
    run = tmp_path / "run"
    run.mkdir()
    info = {"num_classes": 10, "input_shape": [1, 8, 8], "data_channels": 1, "total_steps": 4}
    save_config(run, RunConfig(model=model, data=data), info)
    return run


@pytest.mark.parametrize(
    "model,data,extra,match",
    [
        ("resnet8", "datafns:recorded_digits", [], "--data datafns:recorded_digits (or pass"),
        ("factories:recorded_cnn", "digits", [], "--model factories:recorded_cnn (or pass"),
        ("resnet8", "datafns:recorded_digits", ["--data", "digits"], "differs from this run's"),
        ("factories:recorded_cnn", "digits", ["--model", "resnet8"], "differs from this run's"),
    ],
)
def test_resume_runs_only_named_code(tmp_path, capsys, model, data, extra, match):
    import datafns
    import factories

    factories.CALLS.clear()
    datafns.CALLS.clear()
    run = _recorded_run(tmp_path, model, data)
    (run / "checkpoint.pt").write_bytes(b"never read")
    assert main(["run", "--resume", str(run), *extra]) == 1
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err
    assert factories.CALLS == [] and datafns.CALLS == []


@pytest.fixture
def finished_run(tmp_path):
    """A run directory with a slim model of ``factories:recorded_cnn`` (no training)."""
    import factories

    run = _recorded_run(tmp_path, model="factories:recorded_cnn")
    model = factories.tiny_cnn().eval()
    space = trainonce.analyze(model, (torch.randn(1, 1, 8, 8),))
    zero = torch.zeros(space.num_zigs, dtype=torch.bool)
    zero[torch.nonzero(space.prunable_mask).flatten()[:3]] = True
    space.set_zero(zero)
    trainonce.save(trainonce.construct_subnet(model, space), run / "slim")
    factories.CALLS.clear()
    return run


def test_export_runs_only_named_code(finished_run, capsys):
    import factories

    assert main(["export", str(finished_run), "--format", "safetensors"]) == 1
    assert "--model factories:recorded_cnn (or pass --trust-run-config)" in capsys.readouterr().err
    assert main(["export", str(finished_run), "--format", "onnx", "--model", "resnet8"]) == 1
    assert "differs from this run's model" in capsys.readouterr().err
    assert factories.CALLS == [] and not (finished_run / "exports").exists()
    argv = ["export", str(finished_run), "--format", "safetensors"]
    assert main([*argv, "--model", "factories:recorded_cnn"]) == 0
    assert factories.CALLS == ["recorded_cnn"]
    assert main([*argv, "--trust-run-config"]) == 0
    assert factories.CALLS == ["recorded_cnn"] * 2
    assert (finished_run / "exports" / "model.safetensors").is_file()


def test_held_out_share_is_stratified_and_disjoint():
    from torch.utils.data import TensorDataset

    from trainonce.cli.run import split_held_out

    y = torch.arange(200) % 4
    ds = TensorDataset(torch.arange(200).float(), y)
    train, held = split_held_out(ds, 0.1, seed=0)
    assert len(held) == 20 and len(train) == 180  # 5 of the 50 of each class
    assert not set(train.indices) & set(held.indices)
    assert sorted(int(y[i]) for i in held.indices) == sorted([0, 1, 2, 3] * 5)
    again, _ = split_held_out(ds, 0.1, seed=0)
    assert again.indices == train.indices
