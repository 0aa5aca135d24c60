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
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

STAGES_RUN = (
    "image cache (train)",
    "vocabulary: PHOW",
    "vocabulary: k-means",
    "encode train",
    "train",
    "calibrate",
    "image cache (test)",
    "encode test",
    "scores + metrics",
)


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
    """Samples the summed RSS and CPU time of a process and all its descendants; keeps the peak per stage.

    CPU time (user + system, seconds) is summed over every process of the
    tree ever seen, each at its last sample (a worker that exits keeps what
    it had used at its last sample, up to 0.2 s short), so the CPU seconds of
    a stage are the difference of that sum at its ends: a cost per image that,
    unlike wall time, hardly moves when other work shares the machine.
    """

    def __init__(self, pid: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.stage = None
        self.peaks: dict = {}
        self.peak = 0
        self._cpu: dict = {}
        self.cpu = 0.0
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
                    t = p.cpu_times()
                    self._cpu[p.pid] = t.user + t.system
                except psutil.Error:
                    pass
            self.cpu = sum(self._cpu.values())
            self.peak = max(self.peak, rss)
            if self.stage is not None:
                self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join()


def run_command(args, log_path, stage_of_line=None, env=None, kill=None):
    """Run ``args``; stream its stderr to ``log_path``; return wall time, peaks and stage times.

    ``stage_of_line(line, current)`` -> new stage name or None, called on every
    line (tqdm's carriage-return updates count as lines).  ``kill(line, stage)``
    -> True sends SIGKILL to the command's own process (``kill -9 PID``, as a
    user would; its joblib workers are left to notice and exit, and any still
    alive after :data:`ORPHAN_GRACE_S` seconds are killed and counted); the
    result then says ``killed`` and a non-zero exit is not an error.
    """
    t0 = time.perf_counter()
    load0 = os.getloadavg()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    mon = TreeMonitor(proc.pid)
    mon.start()
    stages, current = [], None
    killed = None
    if stage_of_line is not None:  # until the first stage's output: start-up (imports, reading the dataset)
        stages.append({"stage": "start-up", "start": 0.0, "cpu_start": 0.0})
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
                        stages[-1]["cpu_end"] = mon.cpu
                    stages.append({"stage": new, "start": now, "cpu_start": mon.cpu})
                    current = new
                    mon.stage = new
                if kill is not None and killed is None and kill(line, current):
                    killed = _kill_9(proc, current, line, time.perf_counter() - t0)
                    killed["cpu_at_kill"] = mon.cpu
    rc = proc.wait()
    t_out.join()
    wall = time.perf_counter() - t0
    mon.stop()
    if stages:
        # a killed command's last stage ends at the kill, not when its orphaned workers let go of the pipe
        stages[-1]["end"] = killed["at_s"] if killed is not None else wall
        stages[-1]["cpu_end"] = killed["cpu_at_kill"] if killed is not None else mon.cpu
    for s in stages:
        s["seconds"] = s["end"] - s["start"]
        s["cpu_s"] = s["cpu_end"] - s["cpu_start"]
        s["peak_rss"] = mon.peaks.get(s["stage"], 0)
    stdout = b"".join(out_chunks).decode("utf-8", "replace")
    if killed is not None:
        killed["orphans_killed"] = killed.pop("reaper")()
        killed["orphan_wait_s"] = wall - killed["at_s"]
    if rc != 0 and killed is None:
        tail = Path(log_path).read_text(errors="replace")[-3000:]
        raise SystemExit(f"command failed ({rc}): {' '.join(map(str, args))}\n{stdout[-2000:]}\n{tail}")
    return {
        "wall_s": wall,
        "cpu_s": mon.cpu,
        "peak_rss": mon.peak,
        "stages": stages,
        "stdout": stdout,
        "rc": rc,
        "killed": killed,
        "load_before": load0,
        "load_after": os.getloadavg(),
    }


ORPHAN_GRACE_S = 120.0
"""Seconds the killed command's workers get to notice their parent is gone and exit."""


def _kill_9(proc, stage, line, at_s):
    """SIGKILL ``proc`` alone; return what was killed, and a reaper for workers that outlive the grace time.

    The caller's read loop goes on until every holder of the command's stderr
    (its orphaned workers too) has exited; the reaper, armed here, kills those
    still alive after :data:`ORPHAN_GRACE_S` s so the loop cannot hang.
    """
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        children = []
    os.kill(proc.pid, signal.SIGKILL)
    reaped = []

    def reap():
        for c in children:
            try:
                if c.is_running() and c.status() != psutil.STATUS_ZOMBIE:
                    c.kill()
                    reaped.append(c.pid)
            except psutil.Error:
                pass

    timer = threading.Timer(ORPHAN_GRACE_S, reap)
    timer.daemon = True
    timer.start()

    def finish():
        timer.cancel()
        return len(reaped)

    m = re.search(r"(\d+)/(\d+)", line)
    return {
        "stage": stage,
        "at_s": at_s,
        "progress": m.group(0) if m else None,
        "workers_at_kill": len(children),
        "reaper": finish,
    }


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
        if s.startswith("calibrate"):  # the calibration's held-out SVMs ("calibrate: ...", its bar)
            return "calibrate"
        if s.startswith("encode"):
            if current not in ("encode train", "encode test", "scores + metrics"):
                self.encode_seen += 1
            stage = "encode train" if self.encode_seen == 1 else "encode test"
            if stage == "encode test" and re.search(r"\b(\d+)/\1\b", s):
                return "scores + metrics"  # the test split's last shard is written
            if current == "scores + metrics":
                return None
            return stage
        return None


KILL_STAGES = {
    # the encoding's bar names the encoder since 0.2 ("encode (bow)"); 0.1's was "encode"
    "encode": ("encode train", re.compile(r"^encode(?: \(\w+\))?:")),
    # SGD's bar counts images x epochs; SDCA's epochs, with a total where they are capped (out of core)
    "train": ("train", re.compile(r"^train(?: \+ \d+ folds)? \((?:SGD|SDCA)\)")),
}
"""``--kill`` names: the stage of ``run`` and the progress bar whose count decides the moment."""


class KillAt:
    """``kill(line, stage)`` for :func:`run_command`: true once the bar of ``spec`` passes ``fraction``.

    The bar's count (shards encoded; images x epochs of SGD) is read from
    tqdm's ``n/total`` on the command's stderr, so the kill lands at a drawn
    point of the stage's own work, never at its start or end.
    """

    def __init__(self, spec, fraction: float):
        self.stage, self.bar = spec
        self.fraction = fraction

    def __call__(self, line: str, stage) -> bool:
        if stage != self.stage:
            return False
        s = line.strip()
        # tqdm's bar on a terminal ("| 20/40 ["), the package's plain line through a pipe (": 20/40 shard (50%)")
        m = re.search(r"\|\s*(\d+)/(\d+)\s*\[", s) or re.search(r":\s+(\d+)/(\d+)\s", s)
        if not (self.bar.match(s) and m):
            return False
        done, total = int(m.group(1)), int(m.group(2))
        return 0 < total and max(1, math.ceil(self.fraction * total)) <= done < total


RESUME_LINE = re.compile(r"encode(?: \(\w+\))?: (\d+) of (\d+) shard\(s\) to do in (\S+) \((\d+) kept\)")


def resume_lines(log) -> list:
    """The ``encode: N of M shard(s) to do in DIR (K kept)`` lines of a ``run`` log."""
    text = Path(log).read_text(errors="replace")
    return [
        {"store": Path(d).name, "todo": int(t), "total": int(m), "kept": int(k)}
        for t, m, d, k in RESUME_LINE.findall(text)
    ]


TRAIN_RESUME_LINE = re.compile(r"^train: .*resuming after epoch (\d+)", re.M)


def train_resumes(log) -> list:
    """Epochs each training (SGD or SDCA) of a ``run`` log took up from its checkpoint (``resuming after epoch E``)."""
    return [int(e) for e in TRAIN_RESUME_LINE.findall(Path(log).read_text(errors="replace"))]


def shard_files(work) -> dict:
    """Complete shard files on disk per cache / feature folder of a work folder."""
    out = {}
    for d in sorted(Path(work).glob("features-*")) + sorted(Path(work).glob("images-*")):
        pat = "feat_*.npy" if d.name.startswith("features-") else "shard_[0-9]*[0-9].npy"
        out[d.name] = sorted(f.name for f in d.glob(pat))
    return out


def count_files(work) -> dict:
    return {k: len(v) for k, v in shard_files(work).items()}


RESUMABLE = ("image cache (train)", "image cache (test)", "vocabulary: PHOW", "encode train", "encode test")


def effective_stages(invocations, key="seconds") -> dict:
    """Seconds per stage over all invocations of ``run``, and the seconds the kills lost.

    Resumable stages (caches, encoding; training when the rerun took up its
    training checkpoint, ``train_resumed``) keep what they finished, so their time
    is summed over invocations (the shards or the epoch in flight at a kill,
    redone, are in the sum).  A training that starts again after a kill: the
    killed invocation's training time, and every rerun's start-up, count as
    ``lost`` instead.  ``key="cpu_s"``: the same for CPU seconds.
    """
    eff, lost = {}, 0.0
    for i, r in enumerate(invocations):
        killed_stage = r["killed"]["stage"] if r["killed"] else None
        nxt = invocations[i + 1] if i + 1 < len(invocations) else {}
        resumable = RESUMABLE + (("train",) if any(e > 0 for e in nxt.get("train_resumed") or ()) else ())
        for st in r["stages"]:
            name = st["stage"]
            if (name == killed_stage and name not in resumable) or (name == "start-up" and i > 0):
                lost += st.get(key, 0.0)
                continue
            eff[name] = eff.get(name, 0.0) + st.get(key, 0.0)
    eff["lost to kills"] = lost
    return eff


def stage_peaks(invocations) -> dict:
    peaks = {}
    for r in invocations:
        for st in r["stages"]:
            if st["peak_rss"]:
                peaks[st["stage"]] = max(peaks.get(st["stage"], 0.0), _mib(st["peak_rss"]))
    return peaks


def linked_work(src, dst, drop=()):
    """A copy of work folder ``src`` at ``dst`` made of hard links, without the files in ``drop``.

    Hard links cost no space; the library writes every file through a
    temporary and a rename, so nothing written under ``dst`` changes ``src``.
    ``drop``: paths relative to ``src`` (``features-.../feat_00012.npy``).
    """
    src, dst = Path(src), Path(dst)
    drop = {str(x) for x in drop}
    if dst.exists():
        shutil.rmtree(dst)
    for root, _, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for f in files:
            if f == ".lock" or str(rel / f) in drop:
                continue
            os.link(Path(root) / f, dst / rel / f)


def reference_runs(a, cli, env, data, runp, out, tag, invocations, metrics) -> dict:
    """``--verify-resume`` and ``--compare-solver``: uninterrupted reruns on the features already made.

    Verify: shards are dropped from a hard-linked copy of the work folder
    (some of those the reruns redid after the kill, some kept from before it,
    some test shards) and the training checkpoints; an uninterrupted ``run`` there
    re-encodes exactly those, trains from the first epoch and scores.  Its re-encoded shards must be
    byte-identical to the resumed run's and its metrics and predictions equal.
    Compare: ``run --solver S`` on a linked copy (features reused); mean AUROC
    of both and per class the Spearman rank correlation of the test scores
    (the other run is not calibrated: its scores are the SVMs' margins).
    """
    import numpy as np
    from scipy.stats import spearmanr

    res = {}
    base = ["run", str(data), "--size", str(a.size), "--n-bootstrap", str(a.n_bootstrap)] + a.run_args.split()
    work = runp / "work"
    if a.verify_resume:
        rng = random.Random(a.seed + 1)
        final = shard_files(work)
        first = next((r for r in invocations if r["killed"] and r["killed"]["stage"] == "encode train"), None)
        before = first["killed"]["_present"] if first else {}
        drop = []
        for store, files in final.items():
            if not store.startswith("features-"):
                continue
            k = a.verify_resume if "train_val" in store else max(1, a.verify_resume // 2)
            redone = [f for f in files if f not in set(before.get(store, files))]
            kept = [f for f in files if f not in set(redone)]
            pick = rng.sample(redone, min(len(redone), (k + 1) // 2))
            pick += rng.sample(kept, min(len(kept), k - len(pick)))
            drop += [f"{store}/{f}" for f in sorted(pick)]
        ref = out / f"verify-{tag}"
        if ref.exists():
            shutil.rmtree(ref)
        # without the training checkpoints too (SGD's, SDCA's): the reference trains from its first epoch
        ckpts = [p.name for pat in ("sgd-*.npz", "sdca-*.npz") for p in work.glob(pat)]
        linked_work(work, ref / "work", drop + ckpts)
        cmd = cli + base[:2] + ["--out", str(ref)] + base[2:]
        r = run_command(cmd, out / f"logs-{tag}" / "verify.log", RunStages(), env=env)
        again = resume_lines(out / f"logs-{tag}" / "verify.log")
        from_start = "resuming after epoch" not in (out / f"logs-{tag}" / "verify.log").read_text()
        same_shards = all((work / d).read_bytes() == (ref / "work" / d).read_bytes() for d in drop)
        m_ref = json.loads((ref / "run" / "metrics.json").read_text())
        same_metrics = m_ref["auroc"] == metrics["auroc"] and m_ref["mean_auroc"] == metrics["mean_auroc"]
        same_pred = (ref / "run" / "predictions.csv").read_bytes() == (runp / "run" / "predictions.csv").read_bytes()
        res["verify_resume"] = {
            "command": " ".join(cmd),
            "dropped": drop,
            "reencoded": again,
            "reencoded_shards_identical": same_shards,
            "metrics_identical": same_metrics,
            "predictions_identical": same_pred,
            "trained_from_first_epoch": from_start,
            "wall_s": r["wall_s"],
            "peak_rss_mib": _mib(r["peak_rss"]),
            "load_after": r["load_after"],
        }
        print(
            f"  verify: {len(drop)} shard(s) dropped and re-encoded by an uninterrupted run "
            f"({again}); trained from the first epoch {from_start}; identical shards {same_shards}, "
            f"metrics {same_metrics}, predictions {same_pred} "
            f"({r['wall_s']:.0f} s)",
            flush=True,
        )
        if not a.keep:
            shutil.rmtree(ref, ignore_errors=True)
    if a.compare_solver:
        cmp_dir = out / f"solver-{a.compare_solver}-{tag}"
        linked_work(work, cmp_dir / "work")
        # without the calibration's second set of SVMs (the scores compared are the SVMs' margins, and
        # AUROC does not see a monotone calibration): the same settings otherwise, --config merged
        extra = a.run_args.split()
        settings = {}
        if "--config" in extra:
            i = extra.index("--config")
            settings = json.loads(Path(extra[i + 1]).read_text())
            del extra[i : i + 2]
        if "--preset" in extra:  # --preset and --config do not combine: the preset goes into the file
            from phow_baseline.config import PRESETS

            i = extra.index("--preset")
            settings = {**PRESETS[extra[i + 1]], **settings}
            del extra[i : i + 2]
        cfg_path = out / f"solver-{a.compare_solver}-{tag}.json"
        cfg_path.write_text(json.dumps({**settings, "calibration": "none"}))
        cmd = (
            cli
            + base[:2]
            + ["--out", str(cmp_dir)]
            + base[2 : len(base) - len(a.run_args.split())]
            + extra
            + ["--config", str(cfg_path), "--solver", a.compare_solver]
        )
        parser = RunStages()
        r = run_command(cmd, out / f"logs-{tag}" / f"solver-{a.compare_solver}.log", parser, env=env)
        m2 = json.loads((cmp_dir / "run" / "metrics.json").read_text())

        def scores(d):
            import pandas as pd

            f = d / "run" / "scores.csv"  # the margins; an uncalibrated run has them in predictions.csv
            return pd.read_csv(f if f.exists() else d / "run" / "predictions.csv", index_col=0)

        s1, s2 = scores(runp), scores(cmp_dir)
        s2 = s2.loc[s1.index]
        # a class with one label value in training gets w = 0: constant scores, no rank correlation (None)
        rho = {
            c: (
                None
                if min(s1[c].nunique(), s2[c].nunique()) < 2
                else float(spearmanr(s1[c].to_numpy(), s2[c].to_numpy())[0])
            )
            for c in s1.columns
        }
        defined = [v for v in rho.values() if v is not None]
        # where both solvers separate the test images perfectly the order within each side is not learnt
        # (any margin beyond the hinge costs nothing): the rank correlation that matters is elsewhere
        a1, a2 = metrics.get("auroc") or {}, m2.get("auroc") or {}
        imperfect = [
            c for c, v in rho.items() if v is not None and c in a1 and c in a2 and min(a1[c], a2[c]) < PERFECT_AUROC
        ]
        d_auroc = {c: a2[c] - a1[c] for c in a1 if c in a2}
        train_st = [st for st in r["stages"] if st["stage"] == "train"]
        res["compare_solver"] = {
            "command": " ".join(cmd),
            "solver": parser.solver,
            "mean_auroc": m2.get("mean_auroc"),
            "mean_auroc_main": metrics.get("mean_auroc"),
            "auroc": m2.get("auroc"),
            "spearman_scores": rho,
            "spearman_min": min(defined, default=None),
            "spearman_median": float(np.median(defined)) if defined else None,
            "spearman_undefined": [c for c, v in rho.items() if v is None],
            "spearman_imperfect_classes": imperfect,
            "spearman_median_imperfect": float(np.median([rho[c] for c in imperfect])) if imperfect else None,
            "spearman_min_imperfect": min((rho[c] for c in imperfect), default=None),
            "auroc_difference": d_auroc,
            "auroc_difference_max_abs": max((abs(v) for v in d_auroc.values()), default=None),
            "train_s": train_st[0]["seconds"] if train_st else None,
            "train_peak_rss_mib": _mib(train_st[0]["peak_rss"]) if train_st else None,
            "wall_s": r["wall_s"],
            "peak_rss_mib": _mib(r["peak_rss"]),
            "load_after": r["load_after"],
            "training_main": metrics.get("training"),
            "training_other": m2.get("training"),
        }
        c = res["compare_solver"]
        print(
            f"  {parser.solver} on the same features: mean AUROC {m2.get('mean_auroc'):.4f} vs "
            f"{metrics.get('mean_auroc'):.4f}; Spearman of the scores per class min {c['spearman_min']}, "
            f"median {c['spearman_median']} (undefined: {c['spearman_undefined']}); train {c['train_s']} s",
            flush=True,
        )
        if not a.keep:
            shutil.rmtree(cmp_dir, ignore_errors=True)
    return res


#: AUROC at which a class counts as separated perfectly (the solver comparison's rank correlations).
PERFECT_AUROC = 0.999


def _fmt(v, fmt=".4f"):
    return "-" if v is None else format(v, fmt)


def _mib(b):
    return b / 2**20


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
    ap.add_argument(
        "--run-args",
        default="--preset vlfeat",
        help="Extra options for `run` (e.g. '--solver sgd'); default '--preset vlfeat': the bag of words of the "
        "README's full-dataset table (the defaults are Fisher vectors since 0.3: '' runs them).",
    )
    ap.add_argument(
        "--kill",
        default="",
        help="Comma-separated stages of `run` to kill it in with SIGKILL, in "
        "order, rerunning the same command after each: encode (train split), train (SGD, or SDCA out of core).",
    )
    ap.add_argument("--seed", type=int, default=0, help="Draws the kill points and the verified shards.")
    ap.add_argument(
        "--verify-resume",
        type=int,
        default=0,
        metavar="K",
        help="After the run: drop K train + K/2 test shards from a linked copy of its work folder, "
        "rerun uninterrupted there, and check shards, metrics and predictions are identical.",
    )
    ap.add_argument(
        "--compare-solver",
        default=None,
        choices=["liblinear", "sgd"],
        help="After the run: `run --solver S` on the same features; mean AUROC and per-class "
        "rank correlation of the test scores.",
    )
    a = ap.parse_args()

    cli = _cli()
    out = Path(a.out)
    tag = f"n{a.n or 'all'}-s{a.size}"
    data, runp, logs = out / f"data-{tag}", out / f"run-{tag}", out / f"logs-{tag}"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    rows = []

    def row(stage, seconds, n_images, peak, disk, cpu=None, **extra):
        r = {
            "stage": stage,
            "seconds": seconds,
            "images": n_images,
            "images_per_s": (n_images / seconds) if n_images and seconds > 0 else None,
            "ms_per_image": (1e3 * seconds / n_images) if n_images else None,
            "cpu_s": cpu,
            "cpu_ms_per_image": (1e3 * cpu / n_images) if n_images and cpu is not None else None,
            "peak_rss_mib": _mib(peak) if peak else None,
            "disk_mib": None if disk is None else _mib(disk),
        }
        r.update(extra)
        rows.append(r)
        print(
            f"  {stage:<22} {seconds:9.1f} s  {n_images or 0:>7} img  "
            f"{(r['images_per_s'] or 0):8.2f} img/s  CPU {cpu or 0:8.1f} s  peak {r['peak_rss_mib'] or 0:.0f} MiB  "
            f"disk {0 if disk is None else _mib(disk):.1f} MiB",
            flush=True,
        )

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
    row("phantom (whole command)", r["wall_s"], n_all, r["peak_rss"], du(data), cpu=r["cpu_s"], load=r["load_after"])
    commands = {"phantom": " ".join(cmd)}

    # 2. run (killed with SIGKILL in the stages of --kill, then rerun, until it completes)
    cmd = (
        cli
        + ["run", str(data), "--out", str(runp), "--size", str(a.size), "--n-bootstrap", str(a.n_bootstrap)]
        + a.run_args.split()
    )
    commands["run"] = " ".join(cmd)
    plan = [k.strip() for k in a.kill.split(",") if k.strip()]
    unknown = [k for k in plan if k not in KILL_STAGES]
    if unknown:
        raise SystemExit(f"--kill: unknown stage(s) {unknown}; choose from {sorted(KILL_STAGES)}")
    rng = random.Random(a.seed)
    invocations = []
    while True:
        target = plan[0] if plan else None
        fraction = round(rng.uniform(0.2, 0.7), 3) if target else None
        parser = RunStages()
        log = logs / f"run{len(invocations) + 1 if invocations or plan else ''}.log"
        r = run_command(cmd, log, parser, env=env, kill=KillAt(KILL_STAGES[target], fraction) if target else None)
        r["solver"] = parser.solver
        r["resumed"] = resume_lines(log)
        r["train_resumed"] = train_resumes(log)
        r["log"] = str(log)
        if r["killed"]:
            present = shard_files(runp / "work")
            r["killed"].update(
                fraction_target=fraction, files_on_disk={k: len(v) for k, v in present.items()}, _present=present
            )
            print(
                f"  killed (SIGKILL) in {r['killed']['stage']} at {r['killed']['at_s']:.1f} s, progress "
                f"{r['killed']['progress']}; {r['killed']['orphans_killed']} orphaned worker(s) had to be "
                f"killed; on disk: {r['killed']['files_on_disk']}",
                flush=True,
            )
            plan.pop(0)
            invocations.append(r)
            continue
        if target is not None:
            r["kill_missed"] = target
            print(f"  note: the run completed before it could be killed in {target}", flush=True)
        invocations.append(r)
        break
    for r in invocations[1:]:
        for x in r["resumed"]:
            print(f"  rerun: {x['store']}: {x['todo']} of {x['total']} shard(s) redone ({x['kept']} kept)", flush=True)
    work = runp / "work"
    cfg = json.loads((runp / "config.json").read_text())
    n_vocab = min(cfg.get("vocab_images", 2000), n_tv)
    disk = {
        "image cache (train)": sum(du(p) for p in work.glob("images-train_val-*")),
        "image cache (test)": sum(du(p) for p in work.glob("images-test-*")),
        "vocabulary: k-means": du(work / "vocabulary.npz") + du(work / "vocabulary.json"),
        "encode train": sum(du(p) for p in work.glob("features-train_val-*")),
        "encode test": sum(du(p) for p in work.glob("features-test-*")),
        "train": du(runp / "model"),
        "scores + metrics": du(runp / "run"),
    }
    n_of = {
        "image cache (train)": n_tv,
        "vocabulary: PHOW": n_vocab,
        "vocabulary: k-means": None,
        "encode train": n_tv,
        "train": n_tv,
        "image cache (test)": n_te,
        "encode test": n_te,
        "scores + metrics": n_te,
    }
    many = len(invocations) > 1
    for i, r in enumerate(invocations, 1):
        tag_i = f" [{i}/{len(invocations)}{', killed' if r['killed'] else ''}]" if many else ""
        for st in r["stages"]:
            row(
                f"run{tag_i}: " + st["stage"],
                st["seconds"],
                n_of.get(st["stage"]),
                st["peak_rss"],
                None if many else disk.get(st["stage"]),
                cpu=st.get("cpu_s"),
            )
        row(
            f"run{tag_i} (whole command)",
            r["wall_s"],
            n_all,
            r["peak_rss"],
            None if many else du(runp),
            cpu=r["cpu_s"],
            load=r["load_after"],
        )
    if many:
        row(
            "run (all invocations)",
            sum(r["wall_s"] for r in invocations),
            n_all,
            max(r["peak_rss"] for r in invocations),
            du(runp),
            cpu=sum(r["cpu_s"] for r in invocations),
            load=invocations[-1]["load_after"],
        )
    effective = effective_stages(invocations)
    effective_cpu = effective_stages(invocations, key="cpu_s")
    solver = invocations[-1]["solver"] or next((r["solver"] for r in invocations if r["solver"]), None)
    metrics = json.loads((runp / "run" / "metrics.json").read_text())

    # 3. evaluate (features cached by run)
    cmd = cli + [
        "evaluate",
        str(runp / "model"),
        str(data),
        "--out",
        str(out / f"eval-{tag}"),
        "--work",
        str(work),
        "--n-bootstrap",
        str(a.n_bootstrap),
    ]
    r = run_command(cmd, logs / "evaluate.log", env=env)
    commands["evaluate"] = " ".join(cmd)
    row(
        "evaluate (cached)",
        r["wall_s"],
        n_te,
        r["peak_rss"],
        du(out / f"eval-{tag}"),
        cpu=r["cpu_s"],
        load=r["load_after"],
    )
    m_eval = json.loads((out / f"eval-{tag}" / "metrics.json").read_text())

    # 4. predict on a folder
    folder = out / f"predict-{tag}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    test_names = [x for x in (data / "test_list.txt").read_text().split("\n") if x][: a.predict_images]
    for n in test_names:
        os.symlink((data / "images" / n).resolve(), folder / n)
    cmd = cli + ["predict", str(runp / "model"), str(folder), "--out-csv", str(out / f"predictions-{tag}.csv")]
    r = run_command(cmd, logs / "predict.log", env=env)
    commands["predict"] = " ".join(cmd)
    row(
        "predict (folder)",
        r["wall_s"],
        len(test_names),
        r["peak_rss"],
        du(out / f"predictions-{tag}.csv"),
        cpu=r["cpu_s"],
        load=r["load_after"],
    )

    # 5. report
    cmd = cli + ["report", str(runp / "run"), "--out", str(out / f"report-{tag}")]
    r = run_command(cmd, logs / "report.log", env=env)
    commands["report"] = " ".join(cmd)
    row("report", r["wall_s"], None, r["peak_rss"], du(out / f"report-{tag}"), cpu=r["cpu_s"], load=r["load_after"])

    result = {
        "tag": tag,
        "n_images": n_all,
        "n_train_val": n_tv,
        "n_test": n_te,
        "size": a.size,
        "cpu_count": os.cpu_count(),
        "solver": solver,
        "mean_auroc": metrics.get("mean_auroc"),
        "mean_auroc_evaluate": m_eval.get("mean_auroc"),
        "auroc": metrics.get("auroc"),
        "commands": commands,
        "stages": rows,
        "stage_seconds": effective,
        "stage_cpu_seconds": effective_cpu,
        "stage_peak_rss_mib": stage_peaks(invocations),
        "disk_mib": {k: _mib(v) for k, v in disk.items()},
        "kills": [
            dict(
                {k: v for k, v in r["killed"].items() if not k.startswith("_")},
                rerun=invocations[i + 1]["resumed"],
                train_resumed_after_epochs=invocations[i + 1]["train_resumed"],
            )
            for i, r in enumerate(invocations)
            if r["killed"]
        ],
        "kill_missed": invocations[-1].get("kill_missed"),
        "disk_data_mib": _mib(du(data)),
        "disk_run_mib": _mib(du(runp)),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    js = out / "scale.json"
    allres = json.loads(js.read_text()) if js.exists() else {}
    allres[tag] = result
    js.write_text(json.dumps(allres, indent=2))
    (out / "scale.md").write_text(markdown(allres))
    if a.verify_resume or a.compare_solver:
        result.update(reference_runs(a, cli, env, data, runp, out, tag, invocations, metrics))
        allres[tag] = result
        js.write_text(json.dumps(allres, indent=2))
        (out / "scale.md").write_text(markdown(allres))
    print(
        f"solver {solver}; mean AUROC {metrics.get('mean_auroc')} (evaluate: "
        f"{m_eval.get('mean_auroc')}); table: {out / 'scale.md'}",
        flush=True,
    )
    if not a.keep:
        shutil.rmtree(folder, ignore_errors=True)


def markdown(allres: dict) -> str:
    def cell(v, fmt):  # a table cell: empty when the value was not measured
        return "" if v is None else format(v, fmt)

    lines = ["# Scale rehearsal (phantom in the real dataset's shape; measured by benchmarks/bench_scale.py)", ""]
    for tag, r in allres.items():
        lines += [
            f"## {tag}: {r['n_images']} images ({r['n_train_val']} train_val, {r['n_test']} test), "
            f"{r['size']} px, {r['cpu_count']} cores; solver {r['solver']}; mean AUROC "
            f"{r['mean_auroc'] if r['mean_auroc'] is None else format(r['mean_auroc'], '.4f')}; "
            f"finished {r['finished']}",
            "",
        ]
        lines += [
            "| stage | wall s | images | images/s | ms/image | CPU s | CPU ms/image | peak RSS MiB | disk MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for s in r["stages"]:
            lines.append(
                f"| {s['stage']} | {s['seconds']:.1f} | {cell(s['images'], 'd')} "
                f"| {cell(s['images_per_s'], '.2f')} "
                f"| {cell(s['ms_per_image'], '.1f')} | {cell(s.get('cpu_s'), '.1f')} "
                f"| {cell(s.get('cpu_ms_per_image'), '.1f')} | {cell(s['peak_rss_mib'], '.0f')} "
                f"| {cell(s['disk_mib'], '.1f')} |"
            )
        lines += ["", "Commands:", ""] + [f"    {c}" for c in r["commands"].values()] + [""]
        loads = [s.get("load") for s in r["stages"] if s.get("load")]
        if loads:
            lines += [
                "Load average (1, 5, 15 min) after each command: "
                + "; ".join(", ".join(f"{x:.2f}" for x in l) for l in loads),
                "",
            ]
        for k in r.get("kills") or []:
            lines.append(
                f"Killed with SIGKILL in {k['stage']} at {k['at_s']:.0f} s (bar {k['progress']}, "
                f"drawn point {k['fraction_target']:.0%}); {k['orphans_killed']} orphaned worker(s) "
                f"outlived {ORPHAN_GRACE_S:.0f} s (the command's wall time includes "
                f"{k.get('orphan_wait_s', 0):.0f} s waiting for its workers to let go); shards on disk: "
                + ", ".join(f"{d} {n}" for d, n in k["files_on_disk"].items() if d.startswith("features"))
                + ". The rerun: "
                + (
                    "; ".join(
                        f"{x['store']}: {x['todo']} of {x['total']} redone ({x['kept']} kept)" for x in k["rerun"]
                    )
                    or "-"
                )
                + (
                    "; training taken up after epoch(s) " + ", ".join(map(str, k["train_resumed_after_epochs"]))
                    if k.get("train_resumed_after_epochs")
                    else ("; training started again" if k["stage"] == "train" else "")
                )
                + "."
            )
        if r.get("kills"):
            lines.append("")
        v = r.get("verify_resume")
        if v:
            lines += [
                f"Resume check: {len(v['dropped'])} shards dropped from a hard-linked copy of the work "
                f"folder and re-encoded by an uninterrupted run ("
                + "; ".join(f"{x['store']}: {x['todo']} of {x['total']}" for x in v["reencoded"])
                + f"): re-encoded shards byte-identical: {v['reencoded_shards_identical']}; metrics "
                f"identical: {v['metrics_identical']}; predictions.csv identical: "
                f"{v['predictions_identical']}; trained from the first epoch (no training checkpoint): "
                f"{v.get('trained_from_first_epoch')} ({v['wall_s']:.0f} s).",
                "",
                f"    {v['command']}",
                "",
            ]
        c = r.get("compare_solver")
        if c:
            lines += [
                f"Solver comparison on the same features: {c['solver']} mean AUROC {c['mean_auroc']:.4f} "
                f"vs {r['solver']} {c['mean_auroc_main']:.4f}; Spearman rank correlation of the test "
                f"scores per class: min {_fmt(c['spearman_min'])}, median {_fmt(c['spearman_median'])}"
                + (
                    f" (constant scores, undefined: {', '.join(c['spearman_undefined'])})"
                    if c.get("spearman_undefined")
                    else ""
                )
                + (
                    f"; over the {len(c['spearman_imperfect_classes'])} classes not separated perfectly "
                    f"(AUROC < {PERFECT_AUROC}): min {_fmt(c['spearman_min_imperfect'])}, median "
                    f"{_fmt(c['spearman_median_imperfect'])}"
                    if c.get("spearman_imperfect_classes")
                    else ""
                )
                + (
                    f"; largest per-class AUROC difference {_fmt(c['auroc_difference_max_abs'])}"
                    if c.get("auroc_difference_max_abs") is not None
                    else ""
                )
                + "; "
                f"{c['solver']} training {c['train_s'] or 0:.0f} s, peak "
                f"{c['train_peak_rss_mib'] or 0:.0f} MiB.",
                "",
            ]
            if c.get("auroc_difference"):
                lines += [
                    f"| class | {r['solver']} AUROC | {c['solver']} AUROC | difference | Spearman |",
                    "|---|---:|---:|---:|---:|",
                ]
                for cl, dv in c["auroc_difference"].items():
                    lines.append(
                        f"| {cl} | {r['auroc'][cl]:.4f} | {c['auroc'][cl]:.4f} | {dv:+.4f} | "
                        f"{_fmt(c['spearman_scores'].get(cl))} |"
                    )
                lines.append("")
            lines += [f"    {c['command']}", ""]
    if len(allres) > 1:
        lines += across_n(allres)
    return "\n".join(lines)


ACROSS = (
    ("image cache (train)", "n_train_val"),
    ("encode train", "n_train_val"),
    ("train", "n_train_val"),
    ("image cache (test)", "n_test"),
    ("encode test", "n_test"),
)


def across_n(allres: dict) -> list:
    """One table over the rehearsals: per-image wall and CPU time of each stage and the memory peaks."""
    lines = [
        "## Across N: time per image (ms, wall / CPU) and peak RSS (MiB) per stage",
        "",
        "| rehearsal | images | px | "
        + " | ".join(f"{st} ms/img" for st, _ in ACROSS)
        + " | run ms/img | vocabulary s | peak RSS per stage (max) | run peak RSS | disk MiB | load |",
        "|---|---:|---:|" + "---:|" * (len(ACROSS) + 5) + "---|",
    ]
    for tag, r in allres.items():
        eff = r.get("stage_seconds")
        cpu = r.get("stage_cpu_seconds") or {}
        if eff is None:  # older result: read the table rows
            eff = {st["stage"][5:]: st["seconds"] for st in r["stages"] if st["stage"].startswith("run: ")}
            peaks = {
                st["stage"][5:]: st["peak_rss_mib"]
                for st in r["stages"]
                if st["stage"].startswith("run: ") and st["peak_rss_mib"]
            }
        else:
            peaks = r.get("stage_peak_rss_mib") or {}
        cells = []
        for st, n in ACROSS:
            cell = "" if st not in eff else f"{1e3 * eff[st] / r[n]:.1f}"
            if cell and cpu.get(st):
                cell += f" / {1e3 * cpu[st] / r[n]:.1f}"
            cells.append(cell)
        run_rows = [
            st
            for st in r["stages"]
            if st["stage"].startswith("run")
            and "whole command" in st["stage"]
            or st["stage"] == "run (all invocations)"
        ]
        total = sum(v for k, v in eff.items() if k != "lost to kills")
        total_cpu = sum(v for k, v in cpu.items() if k != "lost to kills")
        vocab = eff.get("vocabulary: PHOW", 0) + eff.get("vocabulary: k-means", 0)
        peak_stage = max(peaks.items(), key=lambda kv: kv[1]) if peaks else ("", 0)
        run_peak = max((st["peak_rss_mib"] or 0) for st in run_rows) if run_rows else 0
        loads = [st["load"][1] for st in r["stages"] if st.get("load")]
        lines.append(
            f"| {tag} | {r['n_images']} | {r['size']} | "
            + " | ".join(cells)
            + f" | {1e3 * total / r['n_images']:.1f}"
            + (f" / {1e3 * total_cpu / r['n_images']:.1f}" if cpu else "")
            + f" | {vocab:.0f} | {peak_stage[1]:.0f} ({peak_stage[0]}) | {run_peak:.0f} "
            f"| {r['disk_run_mib']:.0f} | {max(loads, default=0):.1f} |"
        )
    lines += [
        "",
        "Stage times summed over a killed run's invocations (resumable stages), a training that started "
        "again counted once (complete); `run ms/img` is that sum over all images.  `a / b`: wall / CPU "
        "(user + system of the command's process tree); wall time grows with what else the machine runs, "
        "CPU time hardly.  `load`: the largest 5-minute load average after a command.",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
