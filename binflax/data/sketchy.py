"""The Sketchy database's sketches (Sangkloy et al. 2016) as the TFDS dataset ``sketchy``.

125 classes, 75,471 sketches of 12,500 photos, from the official archives extracted into
the manual dir (7z archives, which TFDS cannot open, so extract them first)::

    DIR/256x256/sketch/tx_000000000000/<class>/<photo id>-<n>.png   (rendered_256x256.7z)
    DIR/info/testset.txt   and   DIR/info/invalid-*.txt                 (info-06-04.7z)

(``DIR/rendered_256x256/256x256/...`` and ``DIR/info-06-04/info/...``, the layout that
extracting into folders named after the archives gives, are found as well.)

The split is the official one: ``info/testset.txt`` lists the test photos as
``<class>/<photo id>.jpg``, and every sketch of a listed photo is a test sketch.
[choice] ``tx_000000000000`` is used (the sketches as drawn, no re-scaling), and the
sketches the info files flag as invalid (``invalid-ambiguous``, ``-context``,
``-error``, ``-pose``: lines ``<photo id>-<n>``) are left out of both splits when those
files are present; the authors report 7,063 test sketches. Images are stored as 256x256
grayscale PNGs (see :mod:`binflax.data.sketch_files`).
"""

from __future__ import annotations

import tensorflow_datasets as tfds
from etils import epath

from binflax.data import sketch_files
from binflax.data.common import DatasetError

URL = "https://sketchy.eye.gatech.edu/"
NUM_CLASSES = 125
SKETCH_DIRS = (
    "256x256/sketch/tx_000000000000",
    "rendered_256x256/256x256/sketch/tx_000000000000",
)
INFO_DIRS = ("info", "info-06-04/info")
TEST_LIST = "testset.txt"
INVALID_LISTS = ("invalid-ambiguous.txt", "invalid-context.txt", "invalid-error.txt",
                 "invalid-pose.txt")  # fmt: skip

_CITATION = """@article{sangkloy2016sketchy,
  author = {Sangkloy, Patsorn and Burnell, Nathan and Ham, Cusuh and Hays, James},
  title = {The Sketchy Database: Learning to Retrieve Badly Drawn Bunnies},
  journal = {ACM Trans. Graph.}, volume = {35}, number = {4}, year = {2016}}"""


def find_source(manual_dir: str | epath.PathLike) -> tuple[epath.Path, epath.Path]:
    """``(sketch root, info folder)`` inside ``manual_dir``; a clear error if absent."""
    manual = epath.Path(manual_dir)
    sketches = next((manual / d for d in SKETCH_DIRS if (manual / d).is_dir()), None)
    info = next((manual / d for d in INFO_DIRS if (manual / d / TEST_LIST).exists()), None)
    if sketches is None or info is None:
        missing = [] if sketches else [f"the sketch tree {manual / SKETCH_DIRS[0]}/<class>/"]
        missing += [] if info else [f"the test list {manual / INFO_DIRS[0] / TEST_LIST}"]
        raise DatasetError(
            f"Sketchy not found: missing {' and '.join(missing)}. Download "
            f"rendered_256x256.7z and info-06-04.7z from {URL}, extract them into "
            "config.manual_dir (--config.manual_dir=DIR)."
        )
    return sketches, info


def _lines(path: epath.Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


class Sketchy(tfds.core.GeneratorBasedBuilder):
    """Sketchy's 125-class sketches with the official photo-level test split."""

    name = "sketchy"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "tx_000000000000 sketches at 256x256, invalid ones left out."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
    Download rendered_256x256.7z and info-06-04.7z from {URL} and extract both into the
    manual_dir, so that it holds 256x256/sketch/tx_000000000000/<class>/*.png and
    info/testset.txt.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return sketch_files.sketch_dataset_info(
            self,
            "Sketchy database sketches, 125 classes, official test split.",
            homepage=URL,
            citation=_CITATION,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root, info = find_source(dl_manager.manual_dir)
        classes = sketch_files.class_folders(root)
        sketch_files.check_class_count(list(classes), NUM_CLASSES, root, "Sketchy")
        test_photos = _lines(info / TEST_LIST)
        invalid = set().union(*(_lines(info / f) for f in INVALID_LISTS if (info / f).exists()))
        self.info.features["label"].names = list(classes)
        splits = {"train": [], "test": []}
        for name, paths in classes.items():
            for path in paths:
                if path.stem in invalid:
                    continue
                photo = path.stem.rsplit("-", 1)[0]
                test = f"{name}/{photo}.jpg" in test_photos
                splits["test" if test else "train"].append((name, path))
        if not splits["test"]:
            raise DatasetError(
                f"no sketch in {root} belongs to a photo listed in {info / TEST_LIST}; "
                "the test list and the sketch tree do not match"
            )
        return {split: self._generate_examples(items) for split, items in splits.items()}

    def _generate_examples(self, items: list[tuple[str, epath.Path]]):
        return sketch_files.examples(items)
