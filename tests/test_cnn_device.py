"""The CNN's device default: ``device=None`` is CUDA when available, for training, evaluation and prediction.

torch is a peer (the cnn extra): the ``cnn`` marker asks tests/conftest.py for it, and the tests take it as the
``torch`` fixture, so that a missing torch skips (or, under ./run-tests and CI, fails) each test by name.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.cnn


@pytest.fixture
def recorder(torch):
    """A class that stands for a network: records the devices it is moved to (no CUDA needed)."""

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.moved_to = []

        def to(self, device, *a, **k):
            self.moved_to.append(torch.device(device))
            return self

    return Recorder


@pytest.mark.parametrize("cuda", [True, False])
def test_default_device_follows_cuda_availability(monkeypatch, torch, recorder, cuda):
    from phow_baseline.cnn.train import CnnConfig, CnnModel, pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    want = "cuda" if cuda else "cpu"
    assert pick_device(None).type == want
    # evaluation and prediction (load_cnn_model -> CnnModel) with no --device, whatever the run was trained with
    for trained_with in (None, "cpu"):
        net = recorder()
        m = CnnModel(net, CnnConfig(device=trained_with))
        assert m.device.type == want and net.moved_to[-1].type == want
    # an explicit device wins
    assert CnnModel(recorder(), CnnConfig(), device="cpu").device.type == "cpu"


def test_training_default_device_is_cuda_when_available(monkeypatch, tmp_path):
    """train_cnn resolves CnnConfig(device=None) through pick_device: CUDA when available."""
    from phow_baseline.cnn import train as cnn_train

    seen = []

    def spy(name=None):
        seen.append(name)
        raise RuntimeError("stop here")  # the device is the first thing training resolves

    monkeypatch.setattr(cnn_train, "pick_device", spy)
    with pytest.raises(RuntimeError, match="stop here"):
        cnn_train.train_cnn(cnn_train.CnnConfig(), None, None, tmp_path, progress=False)
    assert seen == [None]


@pytest.mark.gpu
def test_loaded_model_runs_on_cuda(tmp_path):
    """On a CUDA machine a saved model loads onto the GPU and scores there (deselected without one)."""
    from phow_baseline.cnn.models import build_model
    from phow_baseline.cnn.train import CnnConfig, load_cnn_model, save_model_dir

    cfg = CnnConfig(backbone="resnet50", cache_size=64, resize=64, crop=56)
    save_model_dir(tmp_path, build_model("resnet50", None), cfg)
    m = load_cnn_model(tmp_path)
    assert m.device.type == "cuda" and next(m.model.parameters()).is_cuda
    assert m.scores(np.zeros((64, 64), np.uint8)).shape == (14,)
