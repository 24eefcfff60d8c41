"""``trainonce run --mode erase --optimizer h2spg``: whole residual branches removed in the run,
the slim model (a traced program) saved, reloaded with `trainonce.load_run` and exact."""

import json

import torch

import trainonce
from trainonce.cli.main import main
from trainonce.data import load_data
from trainonce.zoo import build_model


def test_erase_run_removes_branches_and_reloads_exactly(tmp_path):
    out = tmp_path / "erase"
    argv = ["run", "--data", "digits", "--epochs", "1", "--batch-size", "64", "--mode", "erase",
            "--no-onnx",
            "--optimizer", "h2spg", "--target-flops", "0.6", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["flops"][1] <= 0.6 * s["flops"][0] + 1e-6
    recipe = json.loads((out / "slim" / "recipe.json").read_text())
    assert recipe["mode"] == "erase" and recipe["kind"] == "program"
    assert recipe["structures"], "no structure was erased"
    slim = trainonce.load_run(out)
    info = json.loads((out / "config.json").read_text())["info"]
    full = build_model("resnet8", info["num_classes"], info["data_channels"]).model
    full.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    x = torch.stack([load_data("digits").test[i][0] for i in range(16)])
    with torch.no_grad():
        want, got = full.eval()(x), slim(x)
    assert (want - got).abs().max() <= 1e-5 * want.abs().max()
    n_full = sum(p.numel() for p in full.parameters())
    assert sum(p.numel() for p in slim.parameters()) < n_full
