"""Any TFDS dataset by name: info from the builder, splits, computed statistics,
determinism and resumption, process shards, masked evaluation, and preparation from
manual files whose checksums do or do not match TFDS's registry."""

from __future__ import annotations

import hashlib
import itertools
import json
import pathlib
import time

import data_fakes
import numpy as np
import pytest
import tensorflow_datasets as tfds
import tiny_images

import binflax.data
from binflax.data import DatasetError, download_probe, prepare, sources, statistics, tfds_source


def _config(root: pathlib.Path, **overrides):
    settings = {
        "dataset": "tiny_images",
        "data_dir": str(root / "data"),
        "manual_dir": str(root / "manual"),
        "num_classes": tiny_images.NUM_CLASSES,
        "image_size": tiny_images.SIZE,
        "channels": 3,
        "batch_size": 4,
        "eval_batch_size": 5,
        "holdout_fraction": 0.25,
        "shuffle_buffer": 64,
    }
    return data_fakes.config(**{**settings, **overrides})


def _manual_file(root: pathlib.Path, data: bytes) -> None:
    (root / "manual").mkdir(parents=True, exist_ok=True)
    (root / "manual" / tiny_images.FILE_NAME).write_bytes(data)


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_images")
    _manual_file(root, tiny_images.file_bytes())  # the registered file: no option needed
    config = _config(root)
    return config, binflax.data.get_info(config)  # prepares from the manual dir


def _mean_std() -> tuple[np.ndarray, np.ndarray]:
    """Every example's colour, from the data generator itself (independent of binflax)."""
    colours = np.array([tiny_images.colour(i) for i in range(tiny_images.SPLITS["train"])])
    return colours.mean(0) / 255, colours.std(0) / 255


def _index(image: np.ndarray) -> int:
    """Which example a normalized flat image is (its colour, un-normalized)."""
    mean, std = _mean_std()
    rgb = np.round((image[0, 0] * std + mean) * 255)
    for index in range(sum(tiny_images.SPLITS.values())):
        if tuple(rgb) == tiny_images.colour(index):
            return index
    raise AssertionError(f"no example has colour {rgb}")


def _take(config, n: int, start_step: int = 0, index: int = 0, count: int = 1) -> list[dict]:
    stream = binflax.data.train_batches(
        config, seed=3, start_step=start_step, process_index=index, process_count=count
    )
    return list(itertools.islice(stream, n))


def test_info_comes_from_the_builder(generic):
    config, info = generic
    assert info.num_classes == tiny_images.NUM_CLASSES and info.eval_crops == 1
    assert info.image_shape == (8, 8, 3)
    # no test split: validation is the test; a quarter of train is the holdout
    assert info.num_examples == {"train": 30, "holdout": 10, "test": 12}


def test_statistics_are_computed_once_and_recorded_beside_the_data(generic):
    config, _ = generic
    builder = tfds.builder("tiny_images", data_dir=config.data_dir)
    recorded = json.loads((pathlib.Path(builder.data_dir) / statistics.STATISTICS_FILE).read_text())
    mean, std = _mean_std()
    np.testing.assert_allclose(recorded["8x8x3"]["mean"], mean, rtol=1e-6)
    np.testing.assert_allclose(recorded["8x8x3"]["std"], std, rtol=1e-6)


def test_holdout_and_train_are_disjoint_and_cover_the_training_split(generic):
    config, _ = generic

    def indices(split: str) -> list[int]:
        batches = binflax.data.eval_batches(config, split, process_index=0, process_count=1)
        return [
            _index(im) for b in batches for im, m in zip(b["image"], b["mask"], strict=True) if m
        ]

    holdout, test = indices("holdout"), indices("test")
    train = {_index(im) for b in _take(config, 7 * 2) for im in b["image"]}  # two epochs
    assert not set(holdout) & train and set(holdout) | train == set(range(40))
    assert sorted(test) == list(range(40, 52))  # the validation split
    assert len(holdout) == 10


def test_labels_follow_the_examples(generic):
    config, _ = generic
    for batch in _take(config, 3):
        for image, label in zip(batch["image"], batch["label"], strict=True):
            assert label == _index(image) % tiny_images.NUM_CLASSES


def test_deterministic_and_resumable(generic):
    config, _ = generic
    first = _take(config, 10)
    again = _take(config, 10)
    resumed = _take(config, 6, start_step=4)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    for a, b in zip(first[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])


def test_crop_flip_keeps_resumption_exact(generic):
    config, _ = generic
    config = config.copy_and_resolve_references()
    config.augment = "crop_flip"
    first, resumed = _take(config, 5), _take(config, 2, start_step=3)
    for a, b in zip(first[3:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
    padded = [(im == im[0, 0]).all() for b in first for im in b["image"]]
    assert not all(padded)  # some crops show the zero padding


def test_process_shards_partition_each_global_batch(generic):
    config, _ = generic
    config = config.copy_and_resolve_references()
    config.update(batch_size=6, eval_batch_size=10)
    shards = [_take(config, 3, index=i, count=2) for i in range(2)]
    seen = [_index(im) for shard in shards for b in shard for im in b["image"]]
    assert len(seen) == len(set(seen)) == 18  # disjoint over 3 steps of 2 x 3 examples
    evaluated = [
        list(binflax.data.eval_batches(config, "test", process_index=i, process_count=2))
        for i in range(2)
    ]
    assert len(evaluated[0]) == len(evaluated[1])  # same count, padded and masked
    kept = [
        _index(im)
        for e in evaluated
        for b in e
        for im, m in zip(b["image"], b["mask"], strict=True)
        if m
    ]
    assert sorted(kept) == list(range(40, 52))


def test_channels_are_checked_against_the_builder(generic):
    config, _ = generic
    config = config.copy_and_resolve_references()
    config.channels = 1
    with pytest.raises(DatasetError, match="config.channels=1 but tiny_images has 3"):
        binflax.data.get_info(config)


def _registry_hashes() -> dict[str, str]:
    """Every checksum file TFDS reads: its installed registry and the test builder's."""
    files = list((pathlib.Path(tfds.__file__).parent / "url_checksums").glob("*.txt"))
    files.append(pathlib.Path(tiny_images.__file__).parent / "checksums.tsv")
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


def test_a_mismatching_checksum_is_refused_in_one_line_then_accepted(tmp_path, capsys):
    changed = bytearray(tiny_images.file_bytes())
    changed[1] ^= 1  # e.g. recompressed: other bytes, the same examples to the user
    _manual_file(tmp_path, bytes(changed))
    config = _config(tmp_path)
    before = _registry_hashes()
    with pytest.raises(DatasetError) as refused:
        sources.open_source(config, process_count=1)
    message = str(refused.value)
    assert "\n" not in message and tiny_images.FILE_NAME in message
    assert "--accept_checksums" in message and "config.accept_checksums" in message

    args = ["tiny_images", "--manual_dir", config.manual_dir, "--data_dir", config.data_dir]
    assert prepare.main(args) == 1
    assert "--accept_checksums" in capsys.readouterr().err
    assert prepare.main([*args, "--accept_checksums"]) == 0
    assert "tiny_images is prepared" in capsys.readouterr().out
    builder = tfds.builder("tiny_images", data_dir=config.data_dir)
    accepted = (pathlib.Path(builder.data_dir) / tfds_source.ACCEPTED_CHECKSUMS).read_text()
    assert hashlib.sha256(changed).hexdigest() in accepted
    assert _registry_hashes() == before  # TFDS's own checksum files are untouched
    assert builder.info.splits["train"].num_examples == 40


def test_missing_manual_files_name_what_tfds_expects_and_where(tmp_path):
    config = _config(tmp_path)
    with pytest.raises(DatasetError) as missing:
        sources.open_source(config, process_count=1)
    message = str(missing.value)
    assert tiny_images.FILE_NAME in message and str(tmp_path / "manual") in message


def test_a_failed_download_names_the_files_to_put_in_the_manual_dir(tmp_path, monkeypatch):
    """No manual dir given: the host accepts a connection but TFDS's download fails
    (here at once), and the error says which files to put where."""

    def offline(self, *args, **kwargs):
        raise OSError("Failed to resolve 'binflax.invalid'")

    monkeypatch.setattr(download_probe, "unreachable", lambda urls: None)
    monkeypatch.setattr(tfds.download.DownloadManager, "download", offline)
    config = _config(tmp_path, manual_dir=None)
    with pytest.raises(DatasetError) as failed:
        sources.open_source(config, process_count=1)
    message = str(failed.value)
    default_manual = tmp_path / "data" / "downloads" / "manual"
    assert f"put {tiny_images.FILE_NAME} in {default_manual}" in message
    assert "could not be downloaded (OSError)" in message and "\n" not in message


class DownloadStarted(Exception):
    pass


def test_a_download_that_cannot_start_fails_in_seconds(tmp_path, no_proxy_settings, closed_port):
    """The download's proxy refuses connections (as a machine without network refuses
    them): no TFDS download starts (its retries took 3.5 minutes), and the error says at
    once which files to put where."""

    def download(self, *args, **kwargs):
        raise DownloadStarted

    no_proxy_settings.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port}")
    no_proxy_settings.setattr(tfds.download.DownloadManager, "download", download)
    config = _config(tmp_path, manual_dir=None)
    start = time.monotonic()
    with pytest.raises(DatasetError) as failed:
        sources.open_source(config, process_count=1)
    assert time.monotonic() - start < 10.0
    message = str(failed.value)
    default_manual = tmp_path / "data" / "downloads" / "manual"
    assert f"could not be downloaded (proxy 127.0.0.1:{closed_port}: " in message
    assert f"put {tiny_images.FILE_NAME} in {default_manual}" in message and "\n" not in message
