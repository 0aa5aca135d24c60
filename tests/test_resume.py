"""A killed run resumes: kill -9 in the middle of encoding, rerun the same command, only the unfinished
feature shards are redone and the final metrics equal an uninterrupted run's."""

import json
import re
import signal
import subprocess
import sys
import time

import pytest

CLI = [sys.executable, "-c", "from phow_baseline.cli import main; main()"]


def _run_args(sample_dir, out, config):
    return [*CLI, "run", str(sample_dir), "--out", str(out), "--config", str(config), "--quiet", "--n-bootstrap", "50"]


@pytest.mark.slow
def test_kill_9_during_encode_resumes_with_the_unfinished_shards(sample_dir, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "encoding": "bow",  # the vlfeat preset's bag of words (the defaults are Fisher vectors since 0.3)
                "C": 10.0,
                "feature_dtype": "float32",
                "size": 64,
                "n_words": 8,
                "max_descriptors": 2000,
                "vocab_images": 10,
                "n_jobs": 1,
                "shard_size": 16,
                "kernel_map": "none",
                "solver": "sgd",
                "n_epochs": 2,
            }
        )
    )
    out = tmp_path / "killed"
    proc = subprocess.Popen(_run_args(sample_dir, out, config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        shards = []
        while time.time() < deadline and proc.poll() is None:
            shards = list((out / "work").glob("features-train_val-*/feat_*.npy"))
            if len(shards) >= 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed mid-encode"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    kept = len(list((out / "work").glob("features-train_val-*/feat_*.npy")))
    assert kept >= 3
    res = subprocess.run(_run_args(sample_dir, out, config), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(
        r"encode(?: \(\w+\))?: (\d+) of (\d+) shard\(s\) to do in \S*features-train_val-\S* \((\d+) kept\)", res.stderr
    )
    assert m, res.stderr[-3000:]
    todo, total, kept_now = map(int, m.groups())
    assert total == -(-422 // 16) and kept_now == kept and todo == total - kept  # only the unfinished ones
    assert "vocabulary: reusing" in res.stderr

    clean = tmp_path / "clean"
    res = subprocess.run(_run_args(sample_dir, clean, config), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    a = json.loads((out / "run" / "metrics.json").read_text())
    b = json.loads((clean / "run" / "metrics.json").read_text())
    assert a["auroc"] == b["auroc"] and a["mean_auroc"] == b["mean_auroc"]
    assert (out / "run" / "predictions.csv").read_text() == (clean / "run" / "predictions.csv").read_text()
