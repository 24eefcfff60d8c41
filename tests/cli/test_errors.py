"""Bad input gives one clear error line, a non-zero exit, and leaves no files behind."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from trainonce.cli.main import main

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _fails(argv, capsys, match):
    """One error line, last; before it only library warnings, one line each (the CLI shows
    them; a diverging run's optimizer warns of its first skipped step, say)."""
    assert main(argv) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines, "no error line"
    *warned, err = lines
    assert err.startswith("trainonce: error:"), lines
    assert all(w.startswith("trainonce: warning: ") for w in warned), lines
    assert match in err, err
    return err


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--model", "no_such_net"], "unknown model 'no_such_net'"),
        (["--model", "no_such_module:f"], "cannot import module 'no_such_module'"),
        (["--data", "cifar99"], "unknown dataset 'cifar99'"),
        (["--target-flops", "1.5"], "strictly between 0 and 1"),
        (["--target-params", "0"], "strictly between 0 and 1"),
        (["--target-sparsity", "-0.2"], "strictly between 0 and 1"),
        (["--target-group-sparsity", "1"], "--target-group-sparsity must be strictly between"),
        (["--latency-batch", "4"], "--latency-batch describe the latency table of"),
        (["--target-latency", "0.5", "--latency-threads", "0"],
         "--latency-threads must be at least 1"),
        (["--target-latency", "0.5", "--latency-device", "tpu"], "unknown device 'tpu'"),
        (["--data", "datafns:wrong_shapes"], "must be a float tensor [C, H, W]"),
        (["--data", "datafns:mixed_shapes"], "differs from (1, 8, 8)"),
        (["--data", "datafns:not_a_pair"], "must return a (train, test) pair"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "0"], "--lr must be a positive finite number"),
        (["--lr", "nan"], "--lr must be a positive finite number"),
    ],
)
def test_bad_run_options(tmp_path, capsys, extra, match):
    out = tmp_path / "run"
    _fails(["run", "--data", "digits", "--out", str(out), *extra], capsys, match)
    assert not out.exists()


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--lr", "1e6"], "lower --lr"),
        # a finite loss all along but NaN gradients: the optimizer skips every step (it never
        # writes NaN into the weights), and the run is refused: no slim model, no report
        (["--model", "factories:nan_grad_cnn", "--align", "1"],
         "steps had non-finite gradients and were skipped"),
    ],
)
def test_diverging_run_fails_without_report(tmp_path, capsys, extra, match):
    out = tmp_path / "run"
    argv = ["run", "--data", "datafns:small_digits", "--epochs", "1", "--no-progress",
            "--no-onnx"]
    _fails([*argv, "--out", str(out), *extra], capsys, match)
    assert not out.exists()  # no checkpoint was worth keeping, so nothing at all


def test_unwritable_output_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _fails(["run", "--data", "digits", "--out", str(blocker / "run")], capsys, "not writable")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    target = Path("/proc/trainonce-run") if os.geteuid() == 0 else ro / "run"
    _fails(["run", "--data", "digits", "--out", str(target)], capsys, "not writable")
    assert not target.exists()


def test_nonempty_output_dir(tmp_path, capsys):
    (tmp_path / "old.txt").write_text("keep me")
    _fails(["run", "--data", "digits", "--out", str(tmp_path)], capsys, "is not empty")
    assert (tmp_path / "old.txt").read_text() == "keep me"


def test_corrupt_checkpoint_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"config": {"data": "digits"}, "info": {}}')
    (run / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    _fails(["run", "--resume", str(run)], capsys, "corrupt checkpoint")
    assert (run / "checkpoint.pt").read_bytes() == b"not a checkpoint at all"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.json"]
    (run / "checkpoint.pt").unlink()
    _fails(["run", "--resume", str(run)], capsys, "no checkpoint to resume from")
    _fails(["run", "--resume", str(tmp_path / "nope")], capsys, "not a trainonce run directory")


def test_export_bad_run_dir(tmp_path, capsys):
    _fails(["export", str(tmp_path), "--format", "onnx"], capsys, "not a trainonce run directory")


def test_analyze_bad_input(tmp_path, capsys):
    _fails(["analyze", "no_such_net"], capsys, "unknown model")
    _fails(["analyze", "resnet8", "--input-shape", "1,x"], capsys, "--input-shape")
    _fails(["analyze", "resnet8", "--graph", str(tmp_path / "g.png")], capsys, ".html or .svg")


@pytest.mark.slow  # a fresh interpreter imports torch: 7 s
def test_entry_point_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "trainonce.cli.main"]
    ok = subprocess.run([*cmd, "run", "--help"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "--target-flops" in ok.stdout
    bad = subprocess.run(
        [*cmd, "run", "--model", "nope", "--out", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()]
    assert "unknown model 'nope'" in bad.stderr


def test_trace_error_is_one_line_without_torch_logs(tmp_path, capfd):
    """torch.export prints its partial FX graph and logs symbolic-shape warnings (20+ lines)
    around a trace error; the CLI shows only its own line. capfd: torch's log handler writes to
    the process's stderr, not to sys.stderr as pytest replaced it."""
    argv = ["analyze", "factories:value_branch_cnn", "--input-shape", "1,8,8",
            "--graph", str(tmp_path / "g.svg")]
    assert main(argv) == 1
    err = capfd.readouterr().err.strip()
    assert err.splitlines() == [err], err
    assert err.startswith("trainonce: error: TraceError:") and "control flow" in err
    from trainonce.trace import TraceError

    with pytest.raises(TraceError):  # --debug: the traceback, and torch's own output with it
        main(["--debug", *argv])
    assert "def forward" in capfd.readouterr().err


def test_library_warning_is_one_clean_line(tmp_path, capfd):
    argv = ["analyze", "factories:unruled_op_cnn", "--input-shape", "1,8,8",
            "--graph", str(tmp_path / "g.svg")]
    assert main(argv) == 0
    err = capfd.readouterr().err.strip().splitlines()
    assert err == ["trainonce: warning: no channel rule for special_bessel_j0.default in the "
                   "top-level forward: the channels it touches are kept whole"], err


@pytest.mark.slow  # a fresh interpreter imports torch: 7 s
def test_entry_point_warning_has_no_source_echo(tmp_path):
    """Python's own format adds the file, the category and the source line of the frame it
    names (for a console script: `sys.exit(main())`); the CLI prints the message alone."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(Path(__file__).parent)])}
    cmd = [sys.executable, "-m", "trainonce.cli.main", "analyze", "factories:unruled_op_cnn",
           "--input-shape", "1,8,8", "--graph", str(tmp_path / "g.svg")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainonce: warning: no channel rule"), lines
    assert "UserWarning" not in done.stderr and "main()" not in done.stderr
