"""``tiny_images``: a TFDS builder of TFDS's own kind, for the generic-dataset tests.

Like TFDS's ``mnist`` or ``cifar10`` it downloads one file whose checksum TFDS's registry
holds (``checksums.tsv`` beside this module, the file TFDS reads for a builder defined
outside its package), and prepares from it, found in a manual dir by name when there.
binflax has no recipe for it: it takes the generic path (no augmentation by default,
statistics computed from its training split, ``validation`` as its test split).

Every image is one flat RGB colour unique to the example (:func:`colour`), so a test
can tell which example an image came from.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

URL = "https://binflax.invalid/tiny_images.bin"
FILE_NAME = "tiny_images.bin"
SIZE = 8
NUM_CLASSES = 4
SPLITS = {"train": 40, "validation": 12}


def colour(index: int) -> tuple[int, int, int]:
    """Example ``index``'s colour (all examples of all splits distinct)."""
    return (20 + 4 * index, 40 + (7 * index) % 150, 220 - 3 * index)


def file_bytes() -> bytes:
    """The registered download: per example a label byte and SIZE*SIZE*3 pixel bytes."""
    records = []
    for index in range(sum(SPLITS.values())):
        pixels = np.broadcast_to(np.array(colour(index), np.uint8), (SIZE, SIZE, 3))
        records.append(bytes([index % NUM_CLASSES]) + pixels.tobytes())
    return b"".join(records)


def examples(data: bytes, split: str):
    size = 1 + SIZE * SIZE * 3
    start = 0 if split == "train" else SPLITS["train"]
    for index in range(start, start + SPLITS[split]):
        record = data[index * size : (index + 1) * size]
        image = np.frombuffer(record[1:], np.uint8).reshape(SIZE, SIZE, 3)
        yield index, {"image": image, "label": record[0], "index": index}


class TinyImages(tfds.core.GeneratorBasedBuilder):
    """Flat-coloured 8x8 RGB images in 4 classes: 40 train, 12 validation, no test."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(SIZE, SIZE, 3)),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                    "index": np.int64,
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        path = dl_manager.download(URL)
        data = path.read_bytes()
        return {split: examples(data, split) for split in SPLITS}

    def _generate_examples(self, **kwargs):  # the splits are generated above
        raise NotImplementedError
