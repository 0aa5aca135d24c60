"""CNN throughput: the data pipeline alone, training and inference per backbone, and whether the loader keeps up.

For each backbone (default: all four) at 224x224 crops from 256x256 uint8
cache images, batch size B:

* ``loader``: images/s of the data pipeline alone: the image cache read by a
  DataLoader (workers, pinned memory), copied to the device and transformed
  there (resize, flip, crop, normalize), nothing else;
* ``train_compute``: images/s of training steps on a batch already on the
  device (forward + backward + Adam, bf16 autocast and channels_last on CUDA);
* ``train_e2e``: training steps fed by the loader, asynchronously as
  :mod:`phow_baseline.cnn.train` runs them, and the share of wall time the
  GPU spends in the training steps (CUDA events around each step; the loader
  is the bottleneck when it falls well below 1);
* ``inference``: images/s of evaluation (centre crop, no grad).

Images come from $CHESTXRAY14_SAMPLE (its 481 images, resized and cached)
or, with ``--synthetic N``, from N random uint8 images (for machines without
the sample).

    python benchmarks/bench_cnn.py [--device cuda] [--batch-size 64] [--steps 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def build_cache(tmp, sample, synthetic, size=256):
    from phow_baseline.data import ImageCache

    if synthetic:
        rng = np.random.default_rng(0)
        d = Path(tmp) / "synthetic"
        d.mkdir()
        import cv2

        paths = []
        for i in range(synthetic):
            p = d / f"{i:08d}_000.png"
            cv2.imwrite(str(p), rng.integers(0, 256, (size, size), dtype=np.uint8))
            paths.append(p)
    else:
        paths = sorted((Path(sample) / "images").glob("*.png"))
        if not paths:
            raise SystemExit(f"{sample}/images: no images; set CHESTXRAY14_SAMPLE or use --synthetic N")
    return ImageCache.build(Path(tmp) / "cache", paths, size=size, equalization="none", progress=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", default=os.environ.get("CHESTXRAY14_SAMPLE", "../shared/chestxray14-sample"))
    ap.add_argument("--synthetic", type=int, default=0)
    ap.add_argument("--backbones", default="vgg11_bn,resnet50,resnet101,densenet121")
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--json")
    a = ap.parse_args()

    import torch

    from phow_baseline.cnn.data import BatchTransform, CacheDataset, make_loader
    from phow_baseline.cnn.models import build_model
    from phow_baseline.cnn.train import pick_device

    dev = pick_device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.backends.cudnn.benchmark = True
    res = {
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "batch_size": a.batch_size,
        "workers": a.workers,
        "cpu_count": os.cpu_count(),
        "backbones": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        cache = build_cache(tmp, a.sample, a.synthetic)
        n = len(cache)
        y = np.zeros((n, 14), np.float32)
        y[np.arange(n), np.arange(n) % 14] = 1
        ds = CacheDataset(cache, np.arange(n), y)
        tf = BatchTransform(True)

        loader = make_loader(ds, a.batch_size, True, a.workers, pin_memory=cuda, drop_last=True)

        def batches():  # one loader, its workers kept alive across epochs
            while True:
                yield from loader

        # loader alone (to the device, transformed)
        it = batches()
        for _ in range(a.warmup):
            xb, _ = next(it)
            tf(xb.to(dev, non_blocking=True))
        sync()
        t = time.perf_counter()
        for _ in range(a.steps):
            xb, _ = next(it)
            tf(xb.to(dev, non_blocking=True))
        sync()
        res["loader_img_s"] = a.steps * a.batch_size / (time.perf_counter() - t)
        print(f"device {res['device']}, batch {a.batch_size}, {a.workers} loader workers, {n} cached images")
        print(f"data pipeline alone: {res['loader_img_s']:.0f} img/s")
        print(
            f"{'backbone':<12} {'train (GPU only)':>17} {'train (with loader)':>20} {'GPU busy':>9} {'inference':>10}"
        )
        for name in a.backbones.split(","):
            model = build_model(name, None).to(dev).to(memory_format=torch.channels_last)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            crit = torch.nn.BCEWithLogitsLoss()
            xb, yb = next(it)
            x_res = tf(xb.to(dev)).contiguous(memory_format=torch.channels_last)
            y_res = yb.to(dev)

            def step(x, yy, model=model, opt=opt, crit=crit):  # this backbone's, bound now
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                    loss = crit(model(x).float(), yy)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            model.train()
            for _ in range(a.warmup):
                step(x_res, y_res)
            sync()
            t = time.perf_counter()
            for _ in range(a.steps):
                step(x_res, y_res)
            sync()
            compute = a.steps * a.batch_size / (time.perf_counter() - t)
            # fed by the loader, asynchronously as in cnn.train: GPU busy time from CUDA events
            events = []
            sync()
            t = time.perf_counter()
            for _ in range(a.steps):
                xb, yb = next(it)
                x = tf(xb.to(dev, non_blocking=True)).contiguous(memory_format=torch.channels_last)
                yy = yb.to(dev, non_blocking=True)
                if cuda:
                    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    e0.record()
                step(x, yy)
                if cuda:
                    e1.record()
                    events.append((e0, e1))
            sync()
            wall = time.perf_counter() - t
            e2e = a.steps * a.batch_size / wall
            busy = sum(e0.elapsed_time(e1) for e0, e1 in events) / 1000 / wall if cuda else float("nan")
            model.eval()
            ev = BatchTransform(False)
            with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                xe = ev(xb.to(dev)).contiguous(memory_format=torch.channels_last)
                for _ in range(a.warmup):
                    model(xe)
                sync()
                t = time.perf_counter()
                for _ in range(a.steps):
                    model(xe)
                sync()
            inf = a.steps * a.batch_size / (time.perf_counter() - t)
            res["backbones"][name] = {
                "train_compute_img_s": compute,
                "train_e2e_img_s": e2e,
                "gpu_busy_share": busy,
                "inference_img_s": inf,
            }
            print(f"{name:<12} {compute:>17.0f} {e2e:>20.0f} {busy:>9.0%} {inf:>10.0f}")
            del model, opt
            if cuda:
                torch.cuda.empty_cache()
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
