"""The TFDS pipelines: determinism, resumption, epochs, process shards, eval padding."""

from __future__ import annotations

import itertools

import data_fakes
import numpy as np
import pytest
import tensorflow_datasets as tfds
from data_fakes import TU_CLASSES, identify

import binflax.data
from binflax.data import DatasetError, augment, prepare, recipes, sources
from binflax.data.tfds_source import Span

TU_MEAN, TU_STD = 0.06, 0.93


def _take(config, n: int, *, seed: int = 0, start_step: int = 0, index: int = 0, count: int = 1):
    stream = binflax.data.train_batches(
        config, seed=seed, start_step=start_step, process_index=index, process_count=count
    )
    return list(itertools.islice(stream, n))


def _ids(batch, grays_to_file, mean=TU_MEAN, std=TU_STD) -> list[str]:
    return [grays_to_file[identify(image, mean, std)] for image in batch["image"]]


def _files_of(config, grays, split: str) -> set[str]:
    """The files of a pipeline split, read straight from TFDS (independent of the pipeline)."""
    builder = tfds.builder(config.dataset, data_dir=config.data_dir)
    sizes = {name: split.num_examples for name, split in builder.info.splits.items()}
    span = sources.spans(recipes.recipe(config.dataset), sizes, config.holdout_fraction)[split]
    ds = builder.as_dataset(split=span.tfds_split)
    return {ex["file_name"].decode() for ex in ds.as_numpy_iterator()}


def test_info(tu_berlin_data):
    config, grays, info = tu_berlin_data
    assert info.num_classes == len(TU_CLASSES) and info.eval_crops == 10
    assert info.image_shape == (32, 32, 1)
    assert info.num_examples == {"train": 12, "holdout": 3, "test": 9}  # 15 * 0.2 held out


def test_train_batches_labels_and_epochs(tu_berlin_data):
    config, grays, info = tu_berlin_data
    by_gray = {g: f for f, g in grays.items()}
    batches = _take(config, 6)  # 2 epochs of 12 // 4 = 3 steps
    names = sorted(TU_CLASSES)
    for batch in batches:
        assert batch["image"].shape == (4, 32, 32, 1) and batch["image"].dtype == np.float32
        assert batch["label"].dtype == np.int32
        for file_name, label in zip(_ids(batch, by_gray), batch["label"], strict=True):
            assert file_name.split("/")[0] == names[label]
    train_files = _files_of(config, grays, "train")
    epochs = [sum((_ids(b, by_gray) for b in batches[i : i + 3]), []) for i in (0, 3)]
    for epoch in epochs:
        assert sorted(epoch) == sorted(train_files)  # each example exactly once
    assert epochs[0] != epochs[1]  # reshuffled


def test_stream_is_deterministic_and_resumable(tu_berlin_data):
    config, _, _ = tu_berlin_data
    full = _take(config, 6, seed=3)  # two epochs of three steps
    for start in (2, 3, 4):  # within an epoch, at an epoch boundary, in the next epoch
        resumed = _take(config, 6 - start, seed=3, start_step=start)
        for a, b in zip(full[start:], resumed, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
    other = _take(config, 1, seed=4)
    assert not np.array_equal(other[0]["image"], full[0]["image"])


def test_cached_stream_has_the_same_guarantees(tu_berlin_data):
    config, grays, _ = tu_berlin_data
    by_gray = {g: f for f, g in grays.items()}
    cached = config.copy_and_resolve_references()
    cached.cache = True
    full = _take(cached, 6, seed=1)
    epoch = sum((_ids(b, by_gray) for b in full[:3]), [])
    assert sorted(epoch) == sorted(_files_of(config, grays, "train"))
    resumed = _take(cached, 2, seed=1, start_step=4)
    for a, b in zip(full[4:], resumed, strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])


def test_two_processes_read_disjoint_shards_covering_train(tu_berlin_data):
    config, grays, _ = tu_berlin_data
    by_gray = {g: f for f, g in grays.items()}
    seen = []
    for index in (0, 1):
        batches = _take(config, 3, index=index, count=2)  # one epoch: (12 // 2) // 2 steps
        assert all(b["image"].shape[0] == 2 for b in batches)
        seen.append({f for b in batches for f in _ids(b, by_gray)})
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == _files_of(config, grays, "train")


@pytest.mark.parametrize("split", ["test", "holdout"])
def test_eval_shards_are_padded_masked_and_cover_the_split(tu_berlin_data, split):
    config, grays, info = tu_berlin_data
    by_gray = {g: f for f, g in grays.items()}
    per_process = []
    for index in (0, 1):
        batches = list(
            binflax.data.eval_batches(config, split, process_index=index, process_count=2)
        )
        per_process.append(len(batches))
        for batch in batches:
            assert batch["image"].shape == (2, 10, 32, 32, 1)
            assert batch["mask"].dtype == bool and batch["label"].dtype == np.int32
        masks = list(np.concatenate([b["mask"] for b in batches]))
        assert masks == sorted(masks, reverse=True)  # real examples first, then padding
        files = [
            by_gray[identify(crops[4], TU_MEAN, TU_STD)]  # the centre crop
            for b in batches
            for crops, keep in zip(b["image"], b["mask"], strict=True)
            if keep
        ]
        per_process.append(files)
    counts, files = per_process[0::2], per_process[1::2]
    assert counts[0] == counts[1]  # every process runs the same number of eval steps
    assert not set(files[0]) & set(files[1])
    assert sorted(files[0] + files[1]) == sorted(_files_of(config, grays, split))


def test_sketchy_pipeline_uses_its_statistics(sketchy_data):
    config, grays, _, info = sketchy_data
    by_gray = {g: f for f, g in grays.items()}
    assert info.num_examples == {"train": 17, "holdout": 0, "test": 5}
    batch = _take(config, 1)[0]
    names = sorted(data_fakes.SKETCHY_CLASSES)
    for file_name, label in zip(_ids(batch, by_gray, 0.0465, 0.9), batch["label"], strict=True):
        assert file_name.split("/")[0] == names[label]
    assert (
        list(binflax.data.eval_batches(config, "holdout", process_index=0, process_count=1)) == []
    )


def test_unprepared_dataset_without_archives_says_what_and_where(tmp_path):
    config = data_fakes.sketch_config(tmp_path, "tu_berlin")
    with pytest.raises(DatasetError) as err:
        binflax.data.get_info(config)
    assert str(tmp_path / "manual" / "sketches_png.zip") in str(err.value)
    config.dataset = "imagenet2012"
    with pytest.raises(DatasetError, match="ILSVRC2012_img_train.tar and ILSVRC2012_img_val"):
        binflax.data.get_info(config)


def test_unprepared_dataset_in_a_multi_process_run_asks_to_prepare_it(tmp_path):
    config = data_fakes.sketch_config(tmp_path, "sketchy")
    with pytest.raises(DatasetError, match="python -m binflax.data.prepare sketchy"):
        next(binflax.data.train_batches(config, seed=0, process_index=0, process_count=2))


def test_prepare_command(tmp_path, capsys):
    manual, data = str(tmp_path / "manual"), str(tmp_path / "data")
    assert prepare.main(["tu_berlin", "--manual_dir", manual, "--data_dir", data]) == 1
    assert "sketches_png.zip" in capsys.readouterr().err
    data_fakes.tu_berlin_tree(tmp_path / "manual", TU_CLASSES, data_fakes.TU_PER_CLASS)
    with data_fakes.tiny_tu_berlin():
        assert prepare.main(["tu_berlin", "--manual_dir", manual, "--data_dir", data]) == 0
    assert "test: 9, train: 15" in capsys.readouterr().out


def test_unknown_dataset_is_named():
    with pytest.raises(DatasetError, match="'mnist_typo'"):
        binflax.data.get_info(data_fakes.config(dataset="mnist_typo"))


def test_quickdraw_carves_a_test_split_from_train():
    spans = sources.spans(recipes.recipe("quickdraw_bitmap"), {"train": 50_426_266}, 0.05)
    assert spans["test"] == Span("train", 50_426_266 - 504_263, 50_426_266)
    rest = 50_426_266 - 504_263
    assert spans["holdout"] == Span("train", 0, round(0.05 * rest))
    assert spans["train"] == Span("train", round(0.05 * rest), rest)


def test_span_shards_partition_the_span():
    span = Span("train", 10, 33)
    for count in (1, 2, 3, 7):
        shards = [span.shard(i, count) for i in range(count)]
        covered = sum((list(range(s.start, s.stop)) for s in shards), [])
        assert covered == list(range(10, 33))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.fixture(scope="module")
def imagenet_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    val = data_fakes.ilsvrc_tars(root / "manual", per_synset=3, num_val=4)
    config = data_fakes.sketch_config(
        root, "imagenet2012", image_size=16, channels=3, holdout_fraction=0.0, batch_size=2
    )
    info = binflax.data.get_info(config)  # prepares TFDS's imagenet2012 from the tars
    return config, val, info


def test_imagenet_from_fake_ilsvrc_tars(imagenet_data):
    config, val, info = imagenet_data
    assert info.num_classes == 1000 and info.eval_crops == 1
    assert info.num_examples == {"train": 6, "holdout": 0, "test": 4}
    names = tfds.builder("imagenet2012", data_dir=config.data_dir).info.features["label"].names
    mean, std = np.array(augment.IMAGENET_MEAN), np.array(augment.IMAGENET_STD)

    def colour(image) -> np.ndarray:
        return (image[8, 8] * std + mean) * 255

    for batch in _take(config, 3):
        assert batch["image"].shape == (2, 16, 16, 3)
        for image, label in zip(batch["image"], batch["label"], strict=True):
            expected = data_fakes.SYNSET_COLORS[names[label]]
            np.testing.assert_allclose(colour(image), expected, atol=8)
    batches = list(binflax.data.eval_batches(config, "test", process_index=0, process_count=1))
    labels = [
        names[lab] for b in batches for lab, keep in zip(b["label"], b["mask"], strict=True) if keep
    ]
    assert sorted(labels) == sorted(val)
    for batch in batches:
        for image, label, keep in zip(batch["image"], batch["label"], batch["mask"], strict=True):
            if keep:
                colour_expected = data_fakes.val_colour(val.index(names[label]))
                np.testing.assert_allclose(colour(image), colour_expected, atol=8)


def test_imagenet_on_tfds_mock_data(imagenet_data):
    config, _, _ = imagenet_data
    with tfds.testing.mock_data(
        num_examples=5, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=config.data_dir
    ):
        batches = _take(config, 3)
        evaluated = next(
            binflax.data.eval_batches(config, "test", process_index=0, process_count=1)
        )
    for batch in batches:
        assert batch["image"].shape == (2, 16, 16, 3) and np.isfinite(batch["image"]).all()
        assert ((batch["label"] >= 0) & (batch["label"] < 1000)).all()
    assert evaluated["image"].shape == (4, 16, 16, 3) and evaluated["mask"].all()
