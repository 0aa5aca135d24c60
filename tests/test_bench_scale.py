"""The rehearsal benchmark's own helpers: where it kills, what it counts, the linked work folder."""

import importlib.util
import os
import re
from pathlib import Path

import numpy as np
import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_scale", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
)
bench_scale = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_scale)


def test_kill_lands_inside_the_stage_at_the_drawn_point():
    kill = bench_scale.KillAt(bench_scale.KILL_STAGES["encode"], 0.5)
    bar = "encode:  {p}%|##   | {n}/40 [00:10<00:30,  1.2s/shard]"
    assert not kill(bar.format(p=0, n=0), "encode train")
    assert not kill(bar.format(p=47, n=19), "encode train")
    assert kill(bar.format(p=50, n=20), "encode train")
    assert not kill(bar.format(p=50, n=20), "encode test")  # another stage
    assert not kill(bar.format(p=100, n=40), "encode train")  # never at the very end
    named = bar.replace("encode:", "encode (bow):")  # the bar names the encoder since 0.2
    # through a pipe (as bench_scale reads it) the bar is the package's plain line
    plain = "encode (bow): {n}/40 shard ({p}%), 00:10 elapsed, 00:30 left, 1.2 shard/s"
    assert kill(plain.format(p=50, n=20), "encode train") and not kill(plain.format(p=47, n=19), "encode train")
    assert not kill(plain.format(p=100, n=40), "encode train")
    assert kill(named.format(p=50, n=20), "encode train") and not kill(named.format(p=47, n=19), "encode train")
    assert not kill("vocabulary: PHOW:  50%|##   | 20/40 [00:10<00:30,  1.2s/img]", "encode train")
    train = bench_scale.KillAt(bench_scale.KILL_STAGES["train"], 0.3)
    assert train("train (SGD):  31%|###  | 31/100 [00:01<00:02, 30img/s]", "train")
    assert not train("train: 14 linear SVMs (SGD, out of core, 10 epochs) on 10 x 36 features", "train")
    assert train("train + 5 folds (SDCA): 27/66 epoch (41%), 04:03 elapsed, 5:49 left, 0.11 epoch/s", "train")


def test_resume_lines_and_the_time_a_kill_loses(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(
        "image cache: 100%|##| 6/6\rencode: 3 of 19 shard(s) to do in /x/work/features-train_val-ab "
        "(16 kept)\nencode (fisher): 0 of 7 shard(s) to do in w/features-test-cd (7 kept)\n"
    )
    assert bench_scale.resume_lines(log) == [
        {"store": "features-train_val-ab", "todo": 3, "total": 19, "kept": 16},
        {"store": "features-test-cd", "todo": 0, "total": 7, "kept": 7},
    ]

    def st(name, s):
        return {"stage": name, "seconds": s, "peak_rss": 0}

    invocations = [
        {"killed": {"stage": "encode train"}, "stages": [st("start-up", 2), st("encode train", 10)]},
        {"killed": {"stage": "train"}, "stages": [st("start-up", 2), st("encode train", 5), st("train", 7)]},
        {"killed": None, "stages": [st("start-up", 2), st("train", 20), st("encode test", 4)]},
    ]
    eff = bench_scale.effective_stages(invocations)
    # encoding resumes: summed; training restarts: the killed part and the reruns' start-ups are lost
    assert eff == {"start-up": 2, "encode train": 15, "train": 20, "encode test": 4, "lost to kills": 11}
    # a training that took up its SGD checkpoint resumes too: summed
    log.write_text(
        "train: 14 linear SVMs (SGD, out of core, 10 epochs) on 10 x 36 features; resuming after "
        "epoch 4 (sgd-0123.npz)\ntrain: 14 linear SVMs (SGD, out of core, 10 epochs) on 9 x 36 features\n"
    )
    assert bench_scale.train_resumes(log) == [4]
    invocations[2]["train_resumed"] = [4]
    eff = bench_scale.effective_stages(invocations)
    assert eff == {"start-up": 2, "encode train": 15, "train": 27, "encode test": 4, "lost to kills": 4}


def test_linked_work_shares_files_but_not_writes(tmp_path):
    src = tmp_path / "work"
    (src / "features-x").mkdir(parents=True)
    for i in range(3):
        np.save(src / "features-x" / f"feat_{i:05d}.npy", np.full(4, i, np.float32))
    (src / "vocabulary.json").write_text("{}")
    (src / ".lock").write_text("123")
    dst = tmp_path / "copy" / "work"
    bench_scale.linked_work(src, dst, ["features-x/feat_00001.npy"])
    assert sorted(p.name for p in (dst / "features-x").iterdir()) == ["feat_00000.npy", "feat_00002.npy"]
    assert not (dst / ".lock").exists()
    assert (
        os.stat(dst / "features-x" / "feat_00000.npy").st_ino == os.stat(src / "features-x" / "feat_00000.npy").st_ino
    )
    assert bench_scale.count_files(dst) == {"features-x": 2}
    assert bench_scale.shard_files(src) == {"features-x": ["feat_00000.npy", "feat_00001.npy", "feat_00002.npy"]}


def test_markdown_reads_a_killed_run_and_the_table_across_n():
    def result(n, kills):
        return {
            "n_images": n,
            "n_train_val": n * 3 // 4,
            "n_test": n // 4,
            "size": 256,
            "cpu_count": 2,
            "solver": "sgd",
            "mean_auroc": 0.9,
            "finished": "now",
            "disk_run_mib": 1.0,
            "commands": {"run": "phow-baseline run"},
            "stages": [
                {
                    "stage": "run (all invocations)",
                    "seconds": 3.0,
                    "images": n,
                    "images_per_s": 1.0,
                    "ms_per_image": 1.0,
                    "peak_rss_mib": 500.0,
                    "disk_mib": 1.0,
                }
            ],
            "stage_seconds": {"encode train": 0.75 * n, "train": 0.1 * n, "lost to kills": 1.0},
            "stage_peak_rss_mib": {"train": 400.0, "encode train": 300.0},
            "kills": kills,
        }

    kill = {
        "stage": "encode train",
        "at_s": 12.0,
        "progress": "5/10",
        "fraction_target": 0.5,
        "orphans_killed": 0,
        "files_on_disk": {"features-train_val-a": 5},
        "rerun": [{"store": "features-train_val-a", "todo": 5, "total": 10, "kept": 5}],
    }
    md = bench_scale.markdown({"n100": result(100, [kill]), "n1000": result(1000, [])})
    assert "features-train_val-a: 5 of 10 redone (5 kept)" in md
    rows = [line for line in md.splitlines() if line.startswith("| n1")]
    assert len(rows) == 2
    # the per-image cost is the same at both N here: 1000 ms/img for encode train (0.75 n s over 0.75 n images)
    assert all(re.search(r"\| 1000\.0 \|", r) for r in rows)


@pytest.mark.slow
def test_a_small_rehearsal_end_to_end_with_the_resume_check(tmp_path, sample_dir):
    """bench_scale itself on 300 phantom images at 64 px with SGD: the table is written, and the resume
    check's reference run re-encodes exactly the dropped shards, trains from its first epoch (the SGD
    checkpoints are not carried over) and gives identical shards, metrics and predictions."""
    import json
    import subprocess
    import sys

    out = tmp_path / "scale"
    cmd = [
        sys.executable,
        str(Path(bench_scale.__file__)),
        "--n",
        "300",
        "--size",
        "64",
        "--out",
        str(out),
        "--like",
        str(sample_dir / "Data_Entry_2017_v2020.csv.gz"),
        "--bbox",
        str(sample_dir / "BBox_List_2017.csv.gz"),
        "--n-bootstrap",
        "10",
        "--predict-images",
        "5",
        "--run-args",
        "--preset vlfeat --solver sgd --n-words 40 --max-descriptors 4000 --n-jobs 2",
        "--verify-resume",
        "2",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "scale.json").read_text())["n300-s64"]
    assert res["solver"] == "sgd" and res["finished"]
    assert res["stage_seconds"].get("calibrate", 0) > 0, res["stage_seconds"]  # its own stage, its own bar
    assert list((out / "run-n300-s64" / "work").glob("sgd-*.npz")), "the SGD run left no checkpoint"
    v = res["verify_resume"]
    assert len(v["dropped"]) == 2
    assert sum(x["todo"] for x in v["reencoded"]) == 2
    assert v["trained_from_first_epoch"] is True
    assert v["reencoded_shards_identical"] and v["metrics_identical"] and v["predictions_identical"]
    assert 0.0 < res["mean_auroc"] <= 1.0
    assert "Resume check" in (out / "scale.md").read_text()
