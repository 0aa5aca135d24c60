"""Half-precision feature stores: float16 shards read back as float32, never mixed with float32 ones."""

import numpy as np
import pytest

from phow_baseline.config import BaselineConfig, ConfigError
from phow_baseline.encoding.store import FeatureStore


def _store(tmp_path, dtype, name="s"):
    return FeatureStore.create(tmp_path / name, [f"i{k}" for k in range(5)], 7, {"p": 1}, shard_size=3, dtype=dtype)


def test_float16_round_trips_within_float16_precision_and_halves_the_disk(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 7)).astype(np.float32) * np.logspace(-3, 3, 7, dtype=np.float32)
    half, full = _store(tmp_path, "float16", "h"), _store(tmp_path, "float32", "f")
    for st in (half, full):
        st.write_shard(0, X[:3])
        st.write_shard(1, X[3:])
    back = FeatureStore.open(half.directory)
    assert back.dtype == "float16"
    Y = back.load()
    assert Y.dtype == np.float32 and Y.shape == X.shape
    assert np.array_equal(Y, X.astype(np.float16).astype(np.float32))  # exactly float16's rounding
    rel = np.abs(Y - X) / np.abs(X)
    assert rel.max() <= 2.0**-11 and rel.max() > 0  # within half precision, and not float32 in disguise
    assert np.array_equal(full.load(), X)
    xb, pos = next(back.batches([4, 0]))
    assert xb.dtype == np.float32 and np.array_equal(xb, Y[[0]]) and list(pos) == [1]
    header = 128  # numpy's .npy header of these shards
    assert half.shard_path(0).stat().st_size - header == 3 * 7 * 2
    assert full.shard_path(0).stat().st_size - header == 3 * 7 * 4


def test_a_store_refuses_mixing_dtypes_across_shards(tmp_path):
    st = _store(tmp_path, "float16")
    st.write_shard(0, np.ones((3, 7), np.float32))
    np.save(st.shard_path(1), np.ones((2, 7), np.float32))  # a float32 shard slipped in
    with pytest.raises(ValueError, match=r"feat_00001\.npy: a float32 shard in a float16 feature store"):
        FeatureStore.open(st.directory).load()
    with pytest.raises(
        ValueError, match=r"s: a float16 feature store; its shards cannot be mixed with float32 ones"
    ):  # the folder is a float16 store: float32 is refused
        _store(tmp_path, "float32")


def test_float16_overflow_and_unknown_dtypes_are_refused(tmp_path):
    st = _store(tmp_path, "float16")
    with pytest.raises(ValueError, match=r"feat_00000\.npy: 1 value\(s\) beyond float16's range"):
        st.write_shard(0, np.array([[1e6] + [0] * 6] * 3, np.float32) * np.array([[1], [0], [0]]))
    with pytest.raises(ValueError, match="dtype must be one of"):
        _store(tmp_path, "float64", "x")
    with pytest.raises(ConfigError, match="feature_dtype"):
        BaselineConfig(feature_dtype="int8")
    assert BaselineConfig().feature_dtype == "float16"  # the default since 0.3 (the strongest preset's)
    assert BaselineConfig.from_preset("vlfeat").feature_dtype == "float32"


def test_encode_split_keeps_float16_features_apart_and_close(tmp_path):
    from phow_baseline.data.phantom import make_phantom_dataset
    from phow_baseline.workflow.steps import build_image_cache, encode_split, fit_vocabulary, open_dataset

    data = make_phantom_dataset(tmp_path / "ph", n_patients=12, size=64, seed=2)
    cfgs = {
        dt: BaselineConfig(
            size=64,
            encoding="fisher",
            fv_components=4,
            fv_pca_dims=8,
            max_descriptors=2000,
            vocab_images=6,
            n_jobs=1,
            shard_size=8,
            feature_dtype=dt,
        )
        for dt in ("float32", "float16")
    }
    ds = open_dataset(data, cfgs["float32"])
    names = ds.split_names("all")
    cache = build_image_cache(ds, names, tmp_path / "w", cfgs["float32"], progress=False, tag="all")
    vocab = fit_vocabulary(cache, range(len(cache)), tmp_path / "w", cfgs["float32"], progress=False)
    stores = {
        dt: encode_split(cache, range(len(cache)), cache.names, tmp_path / "w", vocab, c, "all", progress=False)
        for dt, c in cfgs.items()
    }
    assert stores["float16"].directory.name == stores["float32"].directory.name + "-f16"
    a, b = stores["float32"].load(), stores["float16"].load()
    assert b.dtype == np.float32 and np.abs(a).max() > 0
    assert np.allclose(a, b, rtol=2.0**-11, atol=2.0**-24)


def test_a_0_2_index_with_runtime_encoder_settings_resumes(tmp_path):
    """0.2.0 recorded the encoder's ``verbose`` and threads in a store's index; a rerun must keep its shards."""
    params = {"encoder": "fisher", "encoder_params": {"n_components": 4, "pca_dims": 8}, "vocabulary_sha256": "ab"}
    old = {**params, "encoder_params": {**params["encoder_params"], "verbose": True, "n_threads": 2}}
    store = FeatureStore.create(tmp_path / "f", ["a.png", "b.png"], 3, old, shard_size=1)
    store.write_shard(0, np.ones((1, 3), np.float32))
    again = FeatureStore.create(tmp_path / "f", ["a.png", "b.png"], 3, params, shard_size=1)
    assert again.missing_shards() == [1]
    np.testing.assert_array_equal(again.read_shard(0), np.ones((1, 3), np.float32))
    assert "verbose" not in FeatureStore.open(tmp_path / "f").params["encoder_params"]
    # any other difference is still refused, naming the folder
    other = {**params, "encoder_params": {**params["encoder_params"], "pca_dims": 16}}
    with pytest.raises(ValueError, match="a feature store with other parameters"):
        FeatureStore.create(tmp_path / "f", ["a.png", "b.png"], 3, other, shard_size=1)
