"""The embedded digits: the same interface and guarantees as the TFDS pipelines."""

from __future__ import annotations

import collections
import itertools

import data_fakes
import numpy as np
import pytest

import binflax.data
from binflax.data import DatasetError, digits


def _config(**overrides):
    settings = {"dataset": "digits", "batch_size": 128, "eval_batch_size": 100}
    return data_fakes.config(**{**settings, **overrides})


def _take(config, n: int, **kwargs) -> list[dict]:
    kwargs = {"seed": 0, "process_index": 0, "process_count": 1, **kwargs}
    return list(itertools.islice(binflax.data.train_batches(config, **kwargs), n))


def _rows(images: np.ndarray) -> collections.Counter:
    return collections.Counter(image.tobytes() for image in images)


def test_info_and_split_sizes():
    info = binflax.data.get_info(_config())
    assert info.num_classes == 10 and info.eval_crops == 1
    assert info.image_shape == (32, 32, 1)
    assert info.num_examples == {"train": 1365, "holdout": 72, "test": 360}  # 1,797 in all


def test_training_is_deterministic_resumable_and_epoch_wise():
    config = _config()
    full = _take(config, 12, seed=5)  # 1365 // 128 = 10 steps per epoch
    assert full[0]["image"].shape == (128, 32, 32, 1) and full[0]["label"].dtype == np.int32
    resumed = _take(config, 4, seed=5, start_step=8)
    for a, b in zip(full[8:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    train_rows = _rows(digits._load(config)["train"][0])
    epoch = _rows(np.concatenate([b["image"] for b in full[:10]]))
    assert epoch <= train_rows  # no example twice within an epoch
    assert not np.array_equal(_take(config, 1, seed=6)[0]["image"], full[0]["image"])


def test_two_processes_split_every_global_batch():
    config = _config()
    whole = _take(config, 3, seed=1, start_step=9)
    halves = [
        _take(config, 3, seed=1, start_step=9, process_index=i, process_count=2) for i in (0, 1)
    ]
    for step, batch in enumerate(whole):
        parts = [halves[i][step]["image"] for i in (0, 1)]
        assert parts[0].shape[0] == parts[1].shape[0] == 64
        np.testing.assert_array_equal(np.concatenate(parts), batch["image"])


@pytest.mark.parametrize("split", ["test", "holdout"])
def test_eval_shards_are_masked_and_cover_the_split(split):
    config = _config()
    images = digits._load(config)[split][0]
    seen = collections.Counter()
    counts = []
    for index in (0, 1):
        batches = list(
            binflax.data.eval_batches(config, split, process_index=index, process_count=2)
        )
        counts.append(len(batches))
        for batch in batches:
            assert batch["image"].shape == (50, 32, 32, 1) and batch["mask"].dtype == bool
            seen += _rows(batch["image"][batch["mask"]])
    assert counts[0] == counts[1]
    assert seen == _rows(images)


def test_batch_larger_than_the_data_is_an_error():
    with pytest.raises(DatasetError, match="batch_size=4096"):
        _take(_config(batch_size=4096), 1)
