"""What TFDS tells of a dataset by name, without its data: checked against the datasets'
published facts (CIFAR-10: 32x32 RGB, 10 classes; CIFAR-100: 100 classes; Fashion-MNIST:
28x28 grayscale, 10 classes), over an empty data dir that must stay empty."""

from __future__ import annotations

import pytest
import tensorflow_datasets as tfds
from data_fakes import TU_CLASSES

from binflax.data import DatasetError, recipes, tfds_metadata
from binflax.data.tfds_metadata import Metadata


@pytest.mark.parametrize(
    "name, channels, num_classes",
    [("cifar10", 3, 10), ("cifar100", 3, 100), ("fashion_mnist", 1, 10), ("mnist", 1, 10)],
)
def test_tfds_builders_tell_channels_and_classes_without_data(
    name, channels, num_classes, tmp_path
):
    data_dir = tmp_path / "tfds"
    assert tfds_metadata.metadata(name, str(data_dir)) == Metadata(channels, num_classes)
    assert not data_dir.exists()  # nothing prepared, downloaded or even created


def test_classes_named_at_preparation_are_known_once_prepared(tu_berlin_data, tmp_path):
    config, _, _ = tu_berlin_data
    unprepared = tfds_metadata.metadata("tu_berlin", str(tmp_path / "tfds"))
    assert unprepared == Metadata(channels=1, num_classes=None)  # the class folders decide
    prepared = tfds_metadata.metadata("tu_berlin", config.data_dir)
    assert prepared == Metadata(channels=1, num_classes=len(TU_CLASSES))


def test_channels_are_those_the_recipe_decodes_to(monkeypatch, tmp_path):
    """A recipe's channels win over the stored ones (decode_image converts), as when the
    dataset is opened."""
    monkeypatch.setitem(recipes.RECIPES, "cifar10", recipes.Recipe(channels=1))
    assert tfds_metadata.metadata("cifar10", str(tmp_path)) == Metadata(1, 10)


def test_a_community_namespace_is_not_resolved(monkeypatch):
    asked = []
    monkeypatch.setattr(tfds, "builder", lambda *args, **kwargs: asked.append(args))
    assert tfds_metadata.metadata("huggingface:mnist", None) == Metadata(None, None)
    assert not asked  # TFDS would resolve it over the network


def test_a_builder_whose_info_needs_its_files_is_unknown_not_an_error(monkeypatch):
    class NeedsFiles:
        @property
        def info(self):
            raise FileNotFoundError("labels.txt")

    monkeypatch.setattr(tfds, "builder", lambda name, data_dir: NeedsFiles())
    assert tfds_metadata.metadata("needs_files", None) == Metadata(None, None)


def test_an_unknown_name_suggests_tfds_names_in_one_line():
    with pytest.raises(DatasetError) as unknown:
        tfds_metadata.metadata("fashion_mnst", None)
    message = str(unknown.value)
    assert message.startswith("config.dataset='fashion_mnst' ") and "\n" not in message
    assert "did you mean fashion_mnist" in message
