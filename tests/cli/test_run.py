"""End-to-end ``trainonce run`` on a tiny budget, resume after Ctrl-C, and ``export``."""

import json
import os
import shutil

import onnxruntime as ort
import pytest
import torch
from htmlcheck import check_self_contained

import trainonce
from trainonce.cli.main import main
from trainonce.data import load_data
from trainonce.zoo import build_model


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    argv = ["run", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--out", str(out)]
    assert main(argv + ["--no-progress"]) == 0
    return out


def test_run_directory(run_dir, tmp_path, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.json", "checkpoint.pt", "model.onnx", "report.html", "summary.json"} <= names
    assert {"dense-baseline", "report.md"} <= names and ".staging" not in names
    for png in ("curves.png", "sparsity.png", "channels.png"):
        assert (run_dir / "plots" / png).stat().st_size > 1000
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["params"][1] < s["params"][0] and s["flops"][1] < s["flops"][0]
    assert s["onnx_max_diff"] < 1e-4
    # the built-in model trains a dense baseline by default; the accuracy row compares with it
    base, slim = s["dense_baseline_accuracy"], s["test_accuracy"][1]
    assert 0.5 < base <= 1
    assert f"{100 * (slim - base):+.2f} pts" in (run_dir / "report.md").read_text()
    assert s["pruning_phase_steps"][0] < s["pruning_phase_steps"][1] <= 22
    assert all(v["dense"]["median"] > 0 and v["slim"]["iqr"] >= 0 for v in s["latency_s"].values())
    moved = tmp_path / "report.html"  # mailed: nothing of the run directory beside it
    shutil.copy(run_dir / "report.html", moved)
    images, text = check_self_contained(moved.read_text(encoding="utf-8"))
    assert len(images) == 3
    assert "layer1.conv1" in text and "stem.0 + layer1.conv2" in text  # modules, not groups
    assert f"{base:.2%}" in text and "training, dense baseline" in text and "torch" in text
    assert "trainonce run --data digits --epochs 1 --batch-size 64" in text
    first = s["layers"][0]
    assert first["after"] / first["before"] == min(r["after"] / r["before"] for r in s["layers"])


def test_slim_model_loads_and_matches(run_dir):
    cfg = json.loads((run_dir / "config.json").read_text())
    info = cfg["info"]
    bundle = load_data("digits")
    x = torch.stack([bundle.test[i][0] for i in range(8)])

    def factory():
        return build_model("resnet8", info["num_classes"], info["data_channels"]).model

    slim = trainonce.load(run_dir / "slim", factory).eval()
    dense = factory()
    dense.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"])
    with torch.no_grad():
        ref, got = dense.eval()(x), slim(x)
    assert (ref - got).abs().max() < 1e-4
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in dense.parameters())
    sess = ort.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    assert abs(onnx_out - got.numpy()).max() < 1e-4


def _slim(run_dir):
    info = json.loads((run_dir / "config.json").read_text())["info"]

    def factory():
        return build_model("resnet8", info["num_classes"], info["data_channels"]).model

    return trainonce.load(run_dir / "slim", factory).eval()


def _run_export(path, fmt):
    """A callable running the exported file with the loader a user of that format would use."""
    if fmt == "onnx":
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy()})[0])
    if fmt == "torch-export":
        return torch.export.load(str(path)).module()
    import safetensors.torch as st

    # the weights alone: rebuild the slim architecture, blank it, then fill it from the file
    model = _slim(path.parents[1])
    with torch.no_grad():
        for t in model.state_dict().values():
            t.fill_(float("nan")) if t.is_floating_point() else t.zero_()
    st.load_model(model, str(path), strict=True)
    return model.eval()


@pytest.mark.parametrize(
    "fmt,name",
    [("onnx", "model.onnx"), ("torch-export", "model.pt2"), ("safetensors", "model.safetensors")],
)
def test_export(run_dir, fmt, name, capsys):
    assert main(["export", str(run_dir), "--format", fmt]) == 0
    path = run_dir / "exports" / name
    printed = capsys.readouterr().out
    assert f"wrote {path}" in printed and "max |difference| to torch" in printed
    test = load_data("digits").test
    n = 1 if fmt == "torch-export" else 8  # the .pt2 program was traced at batch 1
    x = torch.stack([test[i][0] for i in range(n)])
    with torch.no_grad():
        ref, got = _slim(run_dir)(x), _run_export(path, fmt)(x)
    assert got.shape == ref.shape and torch.isfinite(got).all()
    assert (ref - got).abs().max() < 1e-4


def test_interrupt_then_resume(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("TRAINONCE_TEST_INTERRUPTED", raising=False)
    monkeypatch.setenv("TRAINONCE_TEST_AT", "2")
    out = tmp_path / "r"
    argv = [
        "run",
        "--data",
        "datafns:interrupting_digits",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(argv) == 130
    assert "resume with" in capsys.readouterr().out
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and len(state["history"]) == state["step"]
    assert not (out / "report.html").exists()
    assert os.environ["TRAINONCE_TEST_INTERRUPTED"] == "1"
    assert main(["run", "--resume", str(out), "--no-progress"]) == 1  # data named by the run dir
    assert "--data datafns:interrupting_digits (or pass --trust-run-config)" in (
        capsys.readouterr().err
    )
    assert main(["run", "--resume", str(out), "--no-progress", "--trust-run-config"]) == 0
    assert f"at step {state['step']}/4" in capsys.readouterr().out
    assert (out / "report.html").exists()
    final = torch.load(out / "checkpoint.pt", weights_only=True)
    assert final["step"] == 4 and [r["step"] for r in final["history"]] == [1, 2, 3, 4]


def test_attention_model_runs_to_the_end_and_its_slim_model_takes_any_batch(tmp_path):
    """nn.MultiheadAttention: the slim model is the traced program. It used to return a tuple
    and accept only the example's batch size, so the run crashed after training."""
    out = tmp_path / "mha"
    argv = ["run", "--model", "factories:attention_net", "--data", "datafns:small_digits",
            "--epochs", "1", "--batch-size", "64", "--target-flops", "0.6", "--out", str(out),
            "--no-progress"]
    assert main(argv) == 0
    assert not (out / "dense-baseline").exists()  # --model: no baseline unless asked for
    assert json.loads((out / "summary.json").read_text())["dense_baseline_accuracy"] is None
    from factories import attention_net

    info = json.loads((out / "config.json").read_text())["info"]
    slim = trainonce.load(out / "slim", lambda: attention_net(info["num_classes"],
                                                             info["data_channels"])).eval()
    dense = attention_net(info["num_classes"], info["data_channels"])
    dense.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    x = torch.stack([load_data("digits").test[i][0] for i in range(5)])  # not the example's 1
    with torch.no_grad():
        ref, got = dense.eval()(x), slim(x)
    assert isinstance(got, torch.Tensor) and got.shape == (5, info["num_classes"])
    assert (ref - got).abs().max() < 1e-4


def test_dense_baseline_resumes_bit_exact(tmp_path, monkeypatch, capsys):
    """--dense-baseline with --model; Ctrl-C while the baseline trains (batch 6 = its step 2):
    the resumed baseline ends with the weights of an uninterrupted one."""
    common = ["run", "--model", "factories:tiny_cnn", "--align", "1", "--dense-baseline",
              "--no-onnx",
              "--epochs", "1",
              "--batch-size", "64", "--no-progress"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main([*common, "--data", "datafns:small_digits", "--out", str(whole)]) == 0
    monkeypatch.delenv("TRAINONCE_TEST_INTERRUPTED", raising=False)
    monkeypatch.setenv("TRAINONCE_TEST_AT", "6")
    data = ["--data", "datafns:interrupting_digits"]
    assert main([*common, *data, "--out", str(cut)]) == 130
    assert torch.load(cut / "dense-baseline" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (cut / "report.html").exists()
    capsys.readouterr()
    resume = ["run", "--resume", str(cut), "--model", "factories:tiny_cnn", *data, "--no-progress"]
    assert main(resume) == 0
    assert "resuming at step 2/4" in capsys.readouterr().out
    a, b = (torch.load(d / "dense-baseline" / "checkpoint.pt", weights_only=True)
            for d in (whole, cut))
    assert a["step"] == b["step"] == 4 and [r["step"] for r in b["history"]] == [1, 2, 3, 4]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    assert sa["dense_baseline_accuracy"] == sb["dense_baseline_accuracy"] is not None
    report = (cut / "report.html").read_text()
    again = f"resumed with: trainonce run --model factories:tiny_cnn {' '.join(data)} --resume"
    assert again in report and "resumed at step 2" in report


def test_latency_target_run_keeps_its_table_and_reports_the_prediction(tmp_path):
    """--target-latency: the table is measured once, kept as latency.json (a resumed run uses
    it, so its selections are the same), and the report puts the predicted dense and slim
    latency beside the measured ones at the table's batch size and threads."""
    out = tmp_path / "lat"
    argv = ["run", "--data", "datafns:small_digits", "--no-dense-baseline", "--epochs", "1",
            "--no-onnx",
            "--batch-size", "64", "--target-latency", "0.95", "--latency-batch", "4",
            "--align", "1",  # 8x8 digits: latency reachable to ~0.75-0.9 (measured), so 0.95
            "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["target_kind"] == "latency" and cfg["latency_batch"] == 4
    table = trainonce.LatencyTable.load(out / "latency.json")
    assert table.batch_size == 4 and table.threads == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["onnx_max_diff"] is None and not (out / "model.onnx").exists()  # --no-onnx
    (label, pred), = summary["predicted_latency_s"].items()
    assert label == "batch 4, 1 thread" and label in summary["latency_s"]
    assert pred["slim"] <= 0.95 * pred["dense"] + 1e-12 and pred["dense"] == table.dense
    assert "predicted latency, batch 4, 1 thread" in (out / "report.md").read_text()
