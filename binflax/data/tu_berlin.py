"""TU-Berlin sketches (Eitz, Hays, Alexa 2012) as the TFDS dataset ``tu_berlin``.

20,000 hand-drawn sketches, 250 classes of 80, 1111x1111 PNGs, from the official
``sketches_png.zip`` (``png/<class>/<id>.png``). Prepare it like any manually downloaded
TFDS dataset::

    python -m binflax.data.prepare tu_berlin --manual_dir DIR   # DIR holds the zip or png/
    tfds build tu_berlin --imports binflax.data.tu_berlin --manual_dir DIR   # TFDS's CLI
    tfds.builder("tu_berlin").download_and_prepare(  # after import binflax.data.tu_berlin
        download_config=tfds.download.DownloadConfig(manual_dir=DIR))

and binflax's pipelines prepare it on first use from ``config.manual_dir``.

[choice] The dataset has no official split; the authors test on 6,500 sketches, 26 per
class. The builder takes, for each class, 26 of its 80 sketches chosen by a generator
seeded with the CRC32 of the class name (independent of file order on disk or of the
other classes): ``train`` holds 13,500 sketches, ``test`` 6,500. Images are stored as
256x256 grayscale PNGs (see :mod:`binflax.data.sketch_files`).
"""

from __future__ import annotations

import zlib

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from binflax.data import sketch_files
from binflax.data.common import DatasetError

URL = "https://cybertron.cg.tu-berlin.de/eitz/projects/classifysketch/"
ARCHIVE = "sketches_png.zip"
NUM_CLASSES = 250
SKETCHES_PER_CLASS = 80
TEST_PER_CLASS = 26

_CITATION = """@article{eitz2012hdhso,
  author = {Eitz, Mathias and Hays, James and Alexa, Marc},
  title = {How Do Humans Sketch Objects?},
  journal = {ACM Trans. Graph.},
  volume = {31}, number = {4}, pages = {44:1--44:10}, year = {2012}}"""


def find_source(manual_dir: str | epath.PathLike) -> epath.Path:
    """The extracted ``png/`` tree in ``manual_dir`` if present, else the zip archive."""
    manual = epath.Path(manual_dir)
    if (manual / "png").is_dir():
        return manual / "png"
    if (manual / ARCHIVE).exists():
        return manual / ARCHIVE
    raise DatasetError(
        f"TU-Berlin sketches not found: expected {manual / ARCHIVE} or its extracted tree "
        f"{manual / 'png'}/<class>/<id>.png. Download {ARCHIVE} from {URL} into "
        "config.manual_dir (--config.manual_dir=DIR)."
    )


def choose_test(class_name: str, num_sketches: int, num_test: int) -> set[int]:
    """Which of a class's sketches (by position in numeric file order) are test ones."""
    rng = np.random.default_rng(zlib.crc32(class_name.encode()))
    return set(rng.choice(num_sketches, size=num_test, replace=False).tolist())


class TuBerlin(tfds.core.GeneratorBasedBuilder):
    """TU-Berlin's 250-class sketch dataset with a stratified 54/26 train/test split."""

    name = "tu_berlin"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "256x256 grayscale PNGs, 26 test sketches per class."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download {ARCHIVE} from {URL} and place it (or its extracted png/ folder, which holds
    png/<class>/<id>.png) in the manual_dir.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return sketch_files.sketch_dataset_info(
            self,
            "TU-Berlin hand-drawn sketches, 250 classes x 80, stored at 256x256.",
            homepage=URL,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        source = find_source(dl_manager.manual_dir)
        root = source if source.is_dir() else epath.Path(dl_manager.extract(source)) / "png"
        if not root.is_dir():
            raise DatasetError(f"{source} holds no png/ folder; is it the official {ARCHIVE}?")
        classes = sketch_files.class_folders(root)
        sketch_files.check_class_count(list(classes), NUM_CLASSES, root, "TU-Berlin")
        short = {c: len(p) for c, p in classes.items() if len(p) != SKETCHES_PER_CLASS}
        if short:
            listed = ", ".join(f"{c} ({n})" for c, n in list(short.items())[:5])
            raise DatasetError(
                f"TU-Berlin: {len(short)} class folders in {root} do not hold "
                f"{SKETCHES_PER_CLASS} sketches, e.g. {listed}; re-extract {ARCHIVE}"
            )
        self.info.features["label"].names = list(classes)
        splits = {"train": [], "test": []}
        for name, paths in classes.items():
            test = choose_test(name, len(paths), TEST_PER_CLASS)
            for i, path in enumerate(paths):
                splits["test" if i in test else "train"].append((name, path))
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items: list[tuple[str, epath.Path]]):
        return sketch_files.examples(items)
