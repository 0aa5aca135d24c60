"""The CNN comparison on the CPU with weights=None and small inputs."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

from phow_baseline.cli import main as cli
from phow_baseline.data import ImageCache
from phow_baseline.data.chestxray14 import ChestXray14

try:  # the cnn extra; without it every test below is skipped (or fails under ./run-tests) one by one,
    import torch  # through the cnn marker and tests/conftest.py, never hidden by a module-level skip

    from phow_baseline.cnn.cam import cam, grad_cam
    from phow_baseline.cnn.data import BatchTransform, CacheDataset, ten_crops
    from phow_baseline.cnn.models import BACKBONES, WeightsError, build_model
    from phow_baseline.cnn.train import CnnConfig, load_cnn_model, train_cnn
except ImportError:
    torch = None
    #: the backbone names as the cnn command line lists them (no torch needed), for parametrize
    BACKBONES = ("vgg11_bn", "resnet50", "resnet101", "densenet121")

pytestmark = pytest.mark.cnn


@pytest.fixture(scope="module")
def small_cache(sample_dir, tmp_path_factory):
    """64x64 cache of 48 real sample images with their labels."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ChestXray14(sample_dir)
    names = ds.split_names("train_val")[:48]
    cache = ImageCache.build(
        tmp_path_factory.mktemp("cnncache"),
        [ds.image_path(n) for n in names],
        names,
        size=64,
        equalization="none",
        progress=False,
        n_jobs=1,
    )
    return cache, ds.labels(names)


TINY = dict(cache_size=64, resize=64, crop=56, batch_size=8, workers=0, device="cpu", amp=False)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbones_build_with_14_outputs_and_backprop(name):
    torch.manual_seed(0)
    m = build_model(name, None)
    x = torch.randn(2, 3, 32, 32)  # every backbone downsamples by 32 and pools adaptively
    out = m(x)
    assert out.shape == (2, 14)
    out.sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


def test_transforms_shapes_and_normalization():
    x = torch.randint(0, 256, (4, 1, 300, 300), dtype=torch.uint8)
    tr = BatchTransform(True, generator=torch.Generator().manual_seed(0))(x)
    ev = BatchTransform(False)(x)
    assert tr.shape == ev.shape == (4, 3, 224, 224)
    assert torch.allclose(ev[:, 0] * 0.229 + 0.485, ev[:, 1] * 0.224 + 0.456, atol=1e-5)  # grey replicated
    rr = BatchTransform(True, random_resized=True, generator=torch.Generator().manual_seed(0))(x)
    assert rr.shape == (4, 3, 224, 224)
    assert ten_crops(x).shape == (10, 4, 3, 224, 224)
    # flips are random per image and reproducible with the generator
    a = BatchTransform(True, generator=torch.Generator().manual_seed(1))(x)
    b = BatchTransform(True, generator=torch.Generator().manual_seed(1))(x)
    assert torch.equal(a, b)


def _train(cfg, cache, y, out, resume=False):
    rows = np.arange(len(y))
    return train_cnn(
        cfg,
        CacheDataset(cache, rows[:40], y[:40]),
        CacheDataset(cache, rows[40:], y[40:]),
        out,
        resume=resume,
        progress=False,
        log=lambda m: None,
    )


@pytest.mark.slow
def test_few_steps_lower_the_loss(small_cache, tmp_path):
    cache, y = small_cache
    cfg = CnnConfig(backbone="densenet121", epochs=3, lr=1e-3, **TINY)
    h = _train(cfg, cache, y, tmp_path / "r")["history"]
    assert h[-1]["train_loss"] < h[0]["train_loss"]
    assert (tmp_path / "r" / "model.json").exists() and (tmp_path / "r" / "last.pt").exists()
    m = load_cnn_model(tmp_path / "r")
    img = np.array(cache[0])
    s = m.scores(img)
    assert s.shape == (14,) and ((0 <= s) & (s <= 1)).all()
    heat = m.heatmaps(img)
    assert heat.shape == (14, 64, 64)


@pytest.mark.slow
def test_overfits_a_handful_of_real_images(small_cache):
    """Eight real images, memorised: training AUROC > 0.95 on the classes present."""
    cache, y = small_cache
    torch.manual_seed(0)
    model = build_model("densenet121", None)
    x = torch.from_numpy(np.stack([cache[i] for i in range(8)]))[:, None]
    yy = torch.from_numpy(y[:8].astype(np.float32))
    tf = BatchTransform(False, 48, 48)
    xb = tf(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xb), yy)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():  # the training predictions (batch statistics, as in the steps above)
        p = torch.sigmoid(model(xb)).numpy()
    cols = [j for j in range(14) if 0 < y[:8, j].sum() < 8]
    assert cols
    assert np.mean([roc_auc_score(y[:8, j], p[:, j]) for j in cols]) > 0.95


@pytest.mark.slow
def test_resume_equals_uninterrupted(small_cache, tmp_path):
    cache, y = small_cache
    cfg = CnnConfig(backbone="densenet121", epochs=2, max_steps_per_epoch=2, patience=5, **TINY)
    torch.use_deterministic_algorithms(True, warn_only=True)
    _train(cfg, cache, y, tmp_path / "straight")
    one = CnnConfig(**{**cfg.to_dict(), "epochs": 1})
    _train(one, cache, y, tmp_path / "split")
    # continue the same run to 2 epochs: the checkpoint's config must match, so rewrite it as the 2-epoch run
    st = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    st["config"] = json.dumps(cfg.to_dict(), sort_keys=True)
    torch.save(st, tmp_path / "split" / "last.pt")
    _train(cfg, cache, y, tmp_path / "split", resume=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads(a["history"])[-1]["train_loss"] == json.loads(b["history"])[-1]["train_loss"]


def test_local_weights_file_and_wrong_shapes(tmp_path):
    torch.manual_seed(0)
    src = build_model("densenet121", None)
    p = tmp_path / "w.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, p)
    m = build_model("densenet121", p)
    for k, v in src.state_dict().items():
        assert torch.equal(v, m.state_dict()[k])
    # old-style DenseNet keys (norm.1, conv.2 ...) and an ImageNet-sized head
    old = {}
    for k, v in src.state_dict().items():
        k = (
            k.replace("norm1", "norm.1")
            .replace("conv1", "conv.1")
            .replace("norm2", "norm.2")
            .replace("conv2", "conv.2")
        )
        old[k] = v
    old["classifier.weight"] = torch.zeros(1000, 1024)
    old["classifier.bias"] = torch.zeros(1000)
    torch.save(old, tmp_path / "old.pth")
    m2 = build_model("densenet121", tmp_path / "old.pth")
    assert torch.equal(
        m2.features.denseblock1.denselayer1.norm1.weight, src.features.denseblock1.denselayer1.norm1.weight
    )
    assert m2.classifier.out_features == 14
    bad = build_model("resnet50", None).state_dict()
    torch.save(bad, tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match=r"resnet\.pth: does not fit densenet121"):
        build_model("densenet121", tmp_path / "resnet.pth")
    with pytest.raises(WeightsError, match="not found"):
        build_model("resnet50", tmp_path / "nope.pth")


@pytest.mark.parametrize("name", ["resnet50", "densenet121"])
def test_cam_uses_each_class_weights(name):
    torch.manual_seed(0)
    m = build_model(name, None).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps, logits = cam(m, name, x)
        ref = m(x)
    assert torch.allclose(logits, ref, atol=1e-4)  # mean CAM + bias is the logit
    assert not torch.allclose(maps[0, 0], maps[0, 1])  # classes have their own maps
    g = grad_cam(m, name, x)
    assert g.shape == maps.shape and (g >= 0).all()


def test_vgg_grad_cam():
    m = build_model("vgg11_bn", None).eval()
    g = grad_cam(m, "vgg11_bn", torch.randn(1, 3, 64, 64))
    assert g.shape[:2] == (1, 14)


@pytest.mark.slow
def test_cli_train_and_evaluate_on_the_sample(sample_dir, tmp_path):
    r = CliRunner()
    res = r.invoke(
        cli,
        [
            "cnn",
            "train",
            str(sample_dir),
            "--out",
            str(tmp_path / "m"),
            "--backbone",
            "resnet50",
            "--epochs",
            "1",
            "--max-steps",
            "2",
            "--batch-size",
            "4",
            "--crop",
            "56",
            "--resize",
            "64",
            "--n-jobs",
            "0",
            "--device",
            "cpu",
            "--quiet",
        ],
    )
    assert res.exit_code == 0, res.output
    res = r.invoke(
        cli,
        [
            "cnn",
            "evaluate",
            str(tmp_path / "m"),
            str(sample_dir),
            "--out",
            str(tmp_path / "run"),
            "--n-bootstrap",
            "20",
            "--quiet",
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (
        m["kind"] == "cnn"
        and m["n_test"] == 59
        and set(m["auroc"]) == set(json.loads((tmp_path / "m" / "model.json").read_text())["labels"])
    )
    cmp_ = r.invoke(cli, ["compare", str(tmp_path / "run")])
    assert cmp_.exit_code == 0 and "Wang2017_official" in cmp_.output
    imgs = sorted((sample_dir / "images").glob("*.png"))[:2]
    res = r.invoke(cli, ["cnn", "predict", str(tmp_path / "m"), *map(str, imgs), "--out-csv", str(tmp_path / "p.csv")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    df = pd.read_csv(tmp_path / "p.csv")
    assert len(df) == 2 and df.iloc[:, 1:].to_numpy().min() >= 0 and df.iloc[:, 1:].to_numpy().max() <= 1


@pytest.mark.parametrize("name", ["resnet50", "densenet121", "vgg11_bn"])
def test_cam_heatmaps_on_the_image_grid(name):
    from phow_baseline.cnn.cam import backbone_of, cam_heatmaps

    torch.manual_seed(0)
    m = build_model(name, None).eval()
    assert backbone_of(m) == name
    img = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    h = cam_heatmaps(m, img, resize=64, crop=48)
    assert h.shape == (14, 64, 64) and h.dtype == np.float32 and np.isfinite(h).all()
    if name == "vgg11_bn":
        return
    assert not np.allclose(h[0], h[1])
    head = m.fc if name == "resnet50" else m.classifier
    with torch.no_grad():  # the same head row for classes 0 and 1: the same map
        head.weight[1] = head.weight[0]
    h2 = cam_heatmaps(m, img, resize=64, crop=48)
    assert np.allclose(h2[0], h2[1]) and not np.allclose(h2[0], h2[2])
    g = cam_heatmaps(m, img, method="gradcam", resize=64, crop=48)
    assert g.shape == (14, 64, 64) and (g >= 0).all()
    with pytest.raises(ValueError, match="uint8"):
        cam_heatmaps(m, img.astype(np.float32))


def test_ten_crop_prediction_averages_sigmoids():
    from phow_baseline.cnn.train import predict_batches

    torch.manual_seed(0)
    m = build_model("resnet50", None).eval()
    x = torch.randint(0, 256, (3, 1, 64, 64), dtype=torch.uint8)
    y = torch.zeros(3, 14)
    cfg = CnnConfig(ten_crop=True, resize=64, crop=48, device="cpu", amp=False)
    p, yy = predict_batches(m, [(x, y)], torch.device("cpu"), cfg)
    with torch.no_grad():
        ref = torch.stack([torch.sigmoid(m(c)) for c in ten_crops(x, 64, 48)]).mean(0).numpy()
    assert p.shape == (3, 14) and np.allclose(p, ref, atol=1e-5)
    p1, _ = predict_batches(m, [(x, y)], torch.device("cpu"), CnnConfig(resize=64, crop=48, device="cpu", amp=False))
    assert not np.allclose(p, p1)
