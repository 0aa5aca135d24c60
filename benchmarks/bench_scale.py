"""A rehearsal of the full ChestX-ray14 run on a phantom in the real dataset's shape.

Drives the real command line, one process per command, and measures each
command from outside (wall time, and peak resident memory of the command's
whole process tree, its joblib workers included, sampled with psutil every
0.2 s):

1. ``phow-baseline phantom DATA --like METADATA --size S --limit N [--bbox BOXES]``
   (the real names, patients, labels and official split of the first
   patient-complete N images of a seeded order);
2. ``phow-baseline run DATA --out RUN --size S``: cache, vocabulary, encoding,
   training and evaluation on the official split.  Its stages are timed from
   the moments its own progress output (stderr) enters each of them: the
   ``image cache`` bar (train, then test), ``vocabulary: PHOW``, the
   ``vocabulary: k-means`` line, the ``encode`` bar (train, then test), the
   ``train:`` line; after the test split's ``encode`` bar completes, the
   scoring and metrics; before the first of them, start-up (imports, reading
   the dataset).  The memory peak is kept per stage (blank: the stage was
   shorter than one sample);
3. ``phow-baseline evaluate RUN/model DATA --work RUN/work`` (features cached);
4. ``phow-baseline predict RUN/model FOLDER`` on a folder of ``--predict-images``
   test images (symbolic links);
5. ``phow-baseline report RUN/run``.

Per stage: wall time, images/s, peak RSS, disk used by what the stage wrote;
the solver ``run`` chose, and the mean AUROC against the phantom's truth (its
labels are the findings drawn).  The table is written to ``OUT/scale.md`` and
``OUT/scale.json``; figures of other N already in ``scale.json`` are kept,
so runs at several N build one table.

    python benchmarks/bench_scale.py --n 2000 [--size 256] [--out runs/scale] \\
        [--like ../shared/chestxray14-sample/Data_Entry_2017_v2020.csv.gz]

Every figure is measured by this script on this machine; nothing is
extrapolated here.  The load average (two cores shared with other work is
typical here) is recorded before and after every command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

STAGES_RUN = ("image cache (train)", "vocabulary: PHOW", "vocabulary: k-means", "encode train", "train",
              "image cache (test)", "encode test", "scores + metrics")


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("phow-baseline")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "phow_baseline.cli"]


def du(path) -> int:
    """Bytes of the files under ``path`` (0 if absent)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    total = 0
    for root, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class TreeMonitor(threading.Thread):
    """Samples the summed RSS of a process and all its descendants; keeps the peak per stage."""

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.stage = None
        self.peaks: dict = {}
        self.peak = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                procs = [self.proc] + self.proc.children(recursive=True)
            except psutil.Error:
                break
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, rss)
            if self.stage is not None:
                self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def run_command(args, log_path, stage_of_line=None, env=None):
    """Run ``args``; stream its stderr to ``log_path``; return wall time, peaks and stage times.

    ``stage_of_line(line, current)`` -> new stage name or None, called on every
    line (tqdm's carriage-return updates count as lines).
    """
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    mon = TreeMonitor(proc.pid)
    mon.start()
    stages, current = [], None
    if stage_of_line is not None:  # until the first stage's output: start-up (imports, reading the dataset)
        stages.append({"stage": "start-up", "start": 0.0})
        current = mon.stage = "start-up"
    out_chunks = []
    t_out = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
    t_out.start()
    buf = b""
    with open(log_path, "wb") as log:
        while True:
            chunk = proc.stderr.read1(65536) if hasattr(proc.stderr, "read1") else proc.stderr.read(1)
            if not chunk:
                break
            log.write(chunk)
            buf += chunk
            parts = re.split(rb"[\r\n]", buf)
            buf = parts.pop()
            for raw in parts:
                line = raw.decode("utf-8", "replace")
                if stage_of_line is None:
                    continue
                new = stage_of_line(line, current)
                if new is not None and new != current:
                    now = time.perf_counter() - t0
                    if stages:
                        stages[-1]["end"] = now
                    stages.append({"stage": new, "start": now})
                    current = new
                    mon.stage = new
    rc = proc.wait()
    t_out.join()
    wall = time.perf_counter() - t0
    mon.stop()
    if stages:
        stages[-1]["end"] = wall
    for s in stages:
        s["seconds"] = s["end"] - s["start"]
        s["peak_rss"] = mon.peaks.get(s["stage"], 0)
    stdout = b"".join(out_chunks).decode("utf-8", "replace")
    if rc != 0:
        tail = Path(log_path).read_text(errors="replace")[-3000:]
        raise SystemExit(f"command failed ({rc}): {' '.join(map(str, args))}\n{stdout[-2000:]}\n{tail}")
    return {"wall_s": wall, "peak_rss": mon.peak, "stages": stages, "stdout": stdout,
            "load_before": load0, "load_after": os.getloadavg()}


class RunStages:
    """Stage of ``phow-baseline run`` from its progress output (see the module docstring)."""

    def __init__(self):
        self.cache_seen = 0
        self.encode_seen = 0
        self.solver = None

    def __call__(self, line: str, current):
        s = line.strip()
        if s.startswith("image cache"):
            if current not in ("image cache (train)", "image cache (test)"):
                self.cache_seen += 1
            return "image cache (train)" if self.cache_seen == 1 else "image cache (test)"
        if s.startswith("vocabulary: PHOW"):
            return "vocabulary: PHOW"
        if s.startswith("vocabulary: k-means") or s.startswith("k-means"):
            return "vocabulary: k-means"
        if s.startswith("train:"):
            self.solver = "sgd" if "SGD" in s else ("liblinear" if "liblinear" in s else s)
            return "train"
        if s.startswith("train (SGD)"):
            return "train"
        if s.startswith("encode"):
            if current not in ("encode train", "encode test", "scores + metrics"):
                self.encode_seen += 1
            stage = "encode train" if self.encode_seen == 1 else "encode test"
            if stage == "encode test" and re.search(r"\b(\d+)/\1\b", s):
                return "scores + metrics"   # the test split's last shard is written
            if current == "scores + metrics":
                return None
            return stage
        return None


def _mib(b):
    return b / 2 ** 20


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sample = os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample")
    ap.add_argument("--like", default=f"{sample}/Data_Entry_2017_v2020.csv.gz")
    ap.add_argument("--bbox", default=f"{sample}/BBox_List_2017.csv.gz")
    ap.add_argument("--n", type=int, help="Images (a patient-complete subset); default all rows.")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", default="runs/scale")
    ap.add_argument("--predict-images", type=int, default=200)
    ap.add_argument("--n-bootstrap", type=int, default=200)
    ap.add_argument("--keep", action="store_true", help="Keep the phantom and the run folders.")
    ap.add_argument("--run-args", default="", help="Extra options for `run` (e.g. '--solver sgd').")
    a = ap.parse_args()

    cli = _cli()
    out = Path(a.out)
    tag = f"n{a.n or 'all'}-s{a.size}"
    data, runp, logs = out / f"data-{tag}", out / f"run-{tag}", out / f"logs-{tag}"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    rows = []

    def row(stage, seconds, n_images, peak, disk, **extra):
        r = {"stage": stage, "seconds": seconds, "images": n_images,
             "images_per_s": (n_images / seconds) if n_images and seconds > 0 else None,
             "ms_per_image": (1e3 * seconds / n_images) if n_images else None,
             "peak_rss_mib": _mib(peak) if peak else None, "disk_mib": None if disk is None else _mib(disk)}
        r.update(extra)
        rows.append(r)
        print(f"  {stage:<22} {seconds:9.1f} s  {n_images or 0:>7} img  "
              f"{(r['images_per_s'] or 0):8.2f} img/s  peak {r['peak_rss_mib'] or 0:.0f} MiB  "
              f"disk {0 if disk is None else _mib(disk):.1f} MiB", flush=True)

    print(f"rehearsal {tag}: {os.cpu_count()} cores, load average {os.getloadavg()}", flush=True)
    # 1. phantom
    cmd = cli + ["phantom", str(data), "--like", a.like, "--size", str(a.size)]
    if a.n:
        cmd += ["--limit", str(a.n)]
    if a.bbox:
        cmd += ["--bbox", a.bbox]
    r = run_command(cmd, logs / "phantom.log", env=env)
    truth = json.loads((data / "phantom_truth.json").read_text())
    n_all = truth["params"]["n_images"]
    n_tv = len([x for x in (data / "train_val_list.txt").read_text().split("\n") if x])
    n_te = len([x for x in (data / "test_list.txt").read_text().split("\n") if x])
    row("phantom (whole command)", r["wall_s"], n_all, r["peak_rss"], du(data), load=r["load_after"])
    commands = {"phantom": " ".join(cmd)}

    # 2. run
    cmd = cli + ["run", str(data), "--out", str(runp), "--size", str(a.size), "--n-bootstrap",
                 str(a.n_bootstrap)] + a.run_args.split()
    parser = RunStages()
    r = run_command(cmd, logs / "run.log", parser, env=env)
    commands["run"] = " ".join(cmd)
    work = runp / "work"
    cfg = json.loads((runp / "config.json").read_text())
    n_vocab = min(cfg.get("vocab_images", 2000), n_tv)
    disk = {
        "image cache (train)": sum(du(p) for p in work.glob("images-train_val-*")),
        "image cache (test)": sum(du(p) for p in work.glob("images-test-*")),
        "vocabulary: k-means": du(work / "vocabulary.npz") + du(work / "vocabulary.json"),
        "encode train": sum(du(p) for p in work.glob("features-train_val-*")),
        "encode test": sum(du(p) for p in work.glob("features-test-*")),
        "train": du(runp / "model"), "scores + metrics": du(runp / "run"),
    }
    n_of = {"image cache (train)": n_tv, "vocabulary: PHOW": n_vocab, "vocabulary: k-means": None,
            "encode train": n_tv, "train": n_tv, "image cache (test)": n_te, "encode test": n_te,
            "scores + metrics": n_te}
    for s in r["stages"]:
        row("run: " + s["stage"], s["seconds"], n_of.get(s["stage"]), s["peak_rss"], disk.get(s["stage"]))
    row("run (whole command)", r["wall_s"], n_all, r["peak_rss"], du(runp), load=r["load_after"])
    metrics = json.loads((runp / "run" / "metrics.json").read_text())

    # 3. evaluate (features cached by run)
    cmd = cli + ["evaluate", str(runp / "model"), str(data), "--out", str(out / f"eval-{tag}"), "--work", str(work),
                 "--n-bootstrap", str(a.n_bootstrap)]
    r = run_command(cmd, logs / "evaluate.log", env=env)
    commands["evaluate"] = " ".join(cmd)
    row("evaluate (cached)", r["wall_s"], n_te, r["peak_rss"], du(out / f"eval-{tag}"), load=r["load_after"])
    m_eval = json.loads((out / f"eval-{tag}" / "metrics.json").read_text())

    # 4. predict on a folder
    folder = out / f"predict-{tag}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    test_names = [x for x in (data / "test_list.txt").read_text().split("\n") if x][: a.predict_images]
    for n in test_names:
        os.symlink((data / "images" / n).resolve(), folder / n)
    cmd = cli + ["predict", str(runp / "model"), str(folder), "--out", str(out / f"predictions-{tag}.csv")]
    r = run_command(cmd, logs / "predict.log", env=env)
    commands["predict"] = " ".join(cmd)
    row("predict (folder)", r["wall_s"], len(test_names), r["peak_rss"], du(out / f"predictions-{tag}.csv"),
        load=r["load_after"])

    # 5. report
    cmd = cli + ["report", str(runp / "run"), "--out", str(out / f"report-{tag}")]
    r = run_command(cmd, logs / "report.log", env=env)
    commands["report"] = " ".join(cmd)
    row("report", r["wall_s"], None, r["peak_rss"], du(out / f"report-{tag}"), load=r["load_after"])

    result = {"tag": tag, "n_images": n_all, "n_train_val": n_tv, "n_test": n_te, "size": a.size,
              "cpu_count": os.cpu_count(), "solver": parser.solver, "mean_auroc": metrics.get("mean_auroc"),
              "mean_auroc_evaluate": m_eval.get("mean_auroc"), "auroc": metrics.get("auroc"),
              "commands": commands, "stages": rows, "disk_data_mib": _mib(du(data)), "disk_run_mib": _mib(du(runp)),
              "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    js = out / "scale.json"
    allres = json.loads(js.read_text()) if js.exists() else {}
    allres[tag] = result
    js.write_text(json.dumps(allres, indent=2))
    (out / "scale.md").write_text(markdown(allres))
    print(f"solver {parser.solver}; mean AUROC {metrics.get('mean_auroc')} (evaluate: "
          f"{m_eval.get('mean_auroc')}); table: {out / 'scale.md'}", flush=True)
    if not a.keep:
        shutil.rmtree(folder, ignore_errors=True)


def markdown(allres: dict) -> str:
    lines = ["# Scale rehearsal (phantom in the real dataset's shape; measured by benchmarks/bench_scale.py)", ""]
    for tag, r in allres.items():
        lines += [f"## {tag}: {r['n_images']} images ({r['n_train_val']} train_val, {r['n_test']} test), "
                  f"{r['size']} px, {r['cpu_count']} cores; solver {r['solver']}; mean AUROC "
                  f"{r['mean_auroc'] if r['mean_auroc'] is None else format(r['mean_auroc'], '.4f')}; "
                  f"finished {r['finished']}", ""]
        lines += ["| stage | wall s | images | images/s | ms/image | peak RSS MiB | disk MiB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for s in r["stages"]:
            f = lambda v, fmt: "" if v is None else format(v, fmt)
            lines.append(f"| {s['stage']} | {s['seconds']:.1f} | {f(s['images'], 'd')} | {f(s['images_per_s'], '.2f')} "
                         f"| {f(s['ms_per_image'], '.1f')} | {f(s['peak_rss_mib'], '.0f')} | {f(s['disk_mib'], '.1f')} |")
        lines += ["", "Commands:", ""] + [f"    {c}" for c in r["commands"].values()] + [""]
        loads = [s.get("load") for s in r["stages"] if s.get("load")]
        if loads:
            lines += ["Load average (1, 5, 15 min) after each command: "
                      + "; ".join(", ".join(f"{x:.2f}" for x in l) for l in loads), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
