"""Every script in examples/ runs as it is: each is started in a fresh interpreter with --smoke
(a few steps), offline, and must exit 0; each says in its docstring what it shows and how to run."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
SCRIPTS = ["cnn_resnet18.py", "transformer_bert.py", "hf_trainer.py", "lightning_callback.py",
           "ddp.py", "yolo.py"]
NEEDS = {"cnn_resnet18.py": "torchvision", "transformer_bert.py": "transformers",
         "hf_trainer.py": "accelerate", "lightning_callback.py": "lightning",
         "yolo.py": "ultralytics"}


def test_every_example_is_smoke_tested_and_documented():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(SCRIPTS)
    readme = (EXAMPLES / "README.md").read_text()
    for name in SCRIPTS:
        source = (EXAMPLES / name).read_text()
        doc = ast.get_docstring(ast.parse(source))
        assert doc and "--smoke" in doc and f"examples/{name}" in doc, name
        assert len(source.splitlines()) <= 80, name
        assert f"`{name}`" in readme, name


@pytest.mark.slow  # a fresh interpreter each: 8-15 s
@pytest.mark.parametrize("name", SCRIPTS)
def test_example_runs_with_smoke(name, tmp_path):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), "--smoke"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert not list(tmp_path.iterdir()), "an example left files in the working directory"
