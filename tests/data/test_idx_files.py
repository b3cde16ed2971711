"""MNIST-format files read with NumPy (``idx:DIR``): files written here in the real IDX
layout (big-endian header, gzipped or not), read back, split, standardised and batched
with the guarantees of the other pipelines, and every bad input named in one error."""

from __future__ import annotations

import gzip
import itertools
import struct

import data_fakes
import numpy as np
import pytest

import binflax.data
from binflax import config_check
from binflax.data import DatasetError, idx_files
from binflax.errors import ConfigError
from tests import runner

TRAIN, TEST, SIZE = 40, 12, 6


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    """The IDX format as its authors define it: 0x0000, type 0x08 (ubyte), the number of
    dimensions, each dimension as a big-endian int32, then the bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.fixture
def files(tmp_path):
    """Four IDX files, the training ones gzipped, the test ones not; their arrays."""
    rng = np.random.default_rng(0)
    arrays = {
        "train": (rng.integers(0, 256, (TRAIN, SIZE, SIZE)), rng.integers(0, 3, TRAIN)),
        "test": (rng.integers(0, 256, (TEST, SIZE, SIZE)), rng.integers(0, 3, TEST)),
    }
    for split, (images_name, labels_name) in idx_files.FILES.items():
        images, labels = arrays[split]
        write_idx(tmp_path / images_name, images, compress=split == "train")
        write_idx(tmp_path / labels_name, labels, compress=split == "train")
    return tmp_path, arrays


def config(root, **overrides):
    settings = {"dataset": f"idx:{root}", "image_size": SIZE, "channels": 1,
                "holdout_fraction": 0.25, "batch_size": 8, "eval_batch_size": 5,
                "augment": "none", "num_classes": 3}  # fmt: skip
    return data_fakes.config(**{**settings, **overrides})


def test_files_are_read_split_and_standardised(files):
    root, arrays = files
    cfg = config(root)
    info = binflax.data.get_info(cfg)
    assert info.num_classes == 3 and info.image_shape == (SIZE, SIZE, 1)
    assert info.num_examples == {"train": 30, "holdout": 10, "test": TEST}
    images, labels = arrays["train"]
    train = images[10:] / 255.0  # the holdout is the first quarter of the training file
    mean, std = train.mean(), train.std()
    batch = next(binflax.data.eval_batches(cfg, "holdout", process_index=0, process_count=1))
    np.testing.assert_allclose(batch["image"][..., 0], (images[:5] / 255.0 - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(batch["label"], labels[:5])
    tests = list(binflax.data.eval_batches(cfg, "test", process_index=0, process_count=1))
    assert [int(b["mask"].sum()) for b in tests] == [5, 5, 2]  # the last batch padded
    got = np.concatenate([b["label"][b["mask"]] for b in tests])
    np.testing.assert_array_equal(got, arrays["test"][1])


def test_training_batches_resume_and_split_over_processes(files):
    root, _ = files
    cfg = config(root)

    def take(n, **kwargs):
        kwargs = {"seed": 3, "start_step": 0, "process_index": 0, "process_count": 1, **kwargs}
        return list(itertools.islice(binflax.data.train_batches(cfg, **kwargs), n))

    full = take(6)  # 30 // 8 = 3 steps an epoch: two epochs, each its own permutation
    resumed = take(2, start_step=4)
    for a, b in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    halves = [take(1, process_index=i, process_count=2)[0] for i in (0, 1)]
    np.testing.assert_array_equal(np.concatenate([h["label"] for h in halves]), full[0]["label"])
    labels = np.concatenate([b["label"] for b in full[:3]])
    assert len(labels) == 24  # an epoch of whole batches, no example twice within it


def test_bad_files_and_configs_are_named_in_one_error(files, tmp_path):
    root, _ = files
    with pytest.raises(DatasetError, match="set config.image_size=6 and config.channels=1"):
        binflax.data.get_info(config(root, image_size=28))
    (root / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="has no t10k-labels-idx1-ubyte .*dataset-fashion-mnist"):
        binflax.data.get_info(config(root, holdout_fraction=0.2))  # not the cached read
    cut = tmp_path / "cut-idx3-ubyte"
    write_idx(cut, np.zeros((4, 3, 3)), compress=False)
    cut.write_bytes(cut.read_bytes()[:-5])
    with pytest.raises(DatasetError, match="cut-idx3-ubyte holds 31 bytes .* cut short"):
        idx_files.read_idx(cut, 3)
    with pytest.raises(DatasetError, match="not an IDX file of 1-D"):
        idx_files.read_idx(cut, 1)
    noise = tmp_path / "noise-idx1-ubyte.gz"
    noise.write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="noise-idx1-ubyte.gz is not a readable gzip"):
        idx_files.read_idx(noise, 1)
    garbled = tmp_path / "garbled-idx3-ubyte"
    write_idx(garbled, np.arange(4000).reshape(40, 10, 10) % 251, compress=True)
    packed = bytearray((tmp_path / "garbled-idx3-ubyte.gz").read_bytes())
    packed[10] ^= 0xFF  # the deflate stream's first byte, past gzip's 10-byte header:
    # zlib's own error ("invalid code lengths set"), not gzip's CRC check
    (tmp_path / "garbled-idx3-ubyte.gz").write_bytes(bytes(packed))
    with pytest.raises(DatasetError, match="garbled-idx3-ubyte.gz is not a readable gzip"):
        idx_files.read_idx(tmp_path / "garbled-idx3-ubyte.gz", 3)
    with pytest.raises(ConfigError, match="'idx:' needs a directory"):
        config_check.checked(config(root, dataset="idx:"))
    with pytest.raises(ConfigError, match="read without augmentation"):
        config_check.checked(config(root, augment="crop_flip"))


def test_an_idx_run_imports_neither_tfds_nor_tensorflow(files):
    """What lets it run on an accelerator image without them (scripts/device_study.sh)."""
    root, _ = files
    code = f"""
import sys
from binflax import data
from configs import default
config = default.get_config()
config.update(dataset="idx:{root}", image_size={SIZE}, channels=1, batch_size=8)
print(data.get_info(config).num_examples, next(data.train_batches(config, seed=0))["image"].shape)
from binflax import config_check
config_check.checked(config)
print("loaded:", [m for m in ("tensorflow", "tensorflow_datasets") if m in sys.modules])
"""
    result = runner.run_python(code)
    assert "loaded: []" in result.stdout, result.stdout[-2000:] + result.stderr
    assert "(8, 6, 6, 1)" in result.stdout
