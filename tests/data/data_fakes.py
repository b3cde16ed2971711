"""Tiny fake datasets in the official layouts, drawn with PIL, for the data tests.

Every fake sketch is a few black strokes on a background whose gray level is unique to
the sketch, so a test can tell which sketch an augmented image came from: strokes are
thin, so the background stays the most common value of any crop (:func:`identify`).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import tarfile
import zipfile

import ml_collections
import numpy as np
import pytest
from PIL import Image, ImageDraw

from binflax.data import sketchy, tu_berlin


def config(**overrides) -> ml_collections.ConfigDict:
    from configs import default

    cfg = default.get_config()
    cfg.update(overrides)
    return cfg


# The real builders expect 250 (TU-Berlin) and 125 (Sketchy) classes; the tests shrink
# those expectations to three classes while they build.
TU_CLASSES = ["airplane", "alarm clock", "zebra"]
TU_PER_CLASS = 8
TU_TEST_PER_CLASS = 3
SKETCHY_CLASSES = ["ant", "car_(sedan)", "wading_bird"]
SKETCHY_INVALID = ["n00000000_100-2", "n00000001_103-1"]  # one test, one train sketch


@contextlib.contextmanager
def tiny_tu_berlin():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tu_berlin, "NUM_CLASSES", len(TU_CLASSES))
        mp.setattr(tu_berlin, "SKETCHES_PER_CLASS", TU_PER_CLASS)
        mp.setattr(tu_berlin, "TEST_PER_CLASS", TU_TEST_PER_CLASS)
        yield


@contextlib.contextmanager
def tiny_sketchy():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sketchy, "NUM_CLASSES", len(SKETCHY_CLASSES))
        yield


def sketch_config(root: pathlib.Path, dataset: str, **overrides) -> ml_collections.ConfigDict:
    """A small config over ``root/manual`` (archives) and ``root/data`` (TFDS)."""
    settings = {
        "dataset": dataset,
        "data_dir": str(root / "data"),
        "manual_dir": str(root / "manual"),
        "image_size": 32,
        "batch_size": 4,
        "eval_batch_size": 4,
        "holdout_fraction": 0.2,
        "shuffle_buffer": 64,
    }
    return config(**{**settings, **overrides})


def draw_sketch(size: int, background: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("L", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, size, 4))
        draw.line([(x0, y0), (x1, y1)], fill=0, width=1)
    return image


def background(index: int) -> int:
    """Distinct gray levels, far from the strokes (0) and the rotation fill (255)."""
    return 40 + 4 * index


def identify(image: np.ndarray, mean: float, std: float) -> int:
    """The background gray of an augmented (inverted, normalized) sketch."""
    gray = np.round(255 * (1 - (image * std + mean))).astype(int)
    values, counts = np.unique(gray, return_counts=True)
    return int(values[np.argmax(counts)])


def tu_berlin_tree(root: pathlib.Path, classes: list[str], per_class: int, size: int = 64):
    """``root/png/<class>/<id>.png``; returns ``{"<class>/<id>.png": background}``."""
    grays = {}
    sketch_id = 1
    for name in classes:
        (root / "png" / name).mkdir(parents=True)
        for _ in range(per_class):
            rel = f"{name}/{sketch_id}.png"
            grays[rel] = background(len(grays))
            draw_sketch(size, grays[rel], sketch_id).save(root / "png" / rel)
            sketch_id += 1
    (root / "png" / "filelist.txt").write_text("\n".join(grays) + "\n")
    return grays


def zip_tree(tree_root: pathlib.Path, archive: pathlib.Path) -> None:
    """The official ``sketches_png.zip``: the ``png/`` tree at the archive's top."""
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tree_root / "png").rglob("*")):
            zf.write(path, path.relative_to(tree_root).as_posix())


def sketchy_tree(
    root: pathlib.Path,
    classes: list[str],
    photos: int,
    sketches_per_photo: int,
    test_photos: int,
    invalid: list[str],
    size: int = 64,
):
    """``256x256/sketch/tx_000000000000/<class>/<photo>-<n>.png`` and ``info/`` lists.

    Returns ``({"<class>/<photo>-<n>.png": background}, test photo list)``.
    """
    sketch_root = root / "256x256" / "sketch" / "tx_000000000000"
    grays, test_list = {}, []
    for c, name in enumerate(classes):
        (sketch_root / name).mkdir(parents=True)
        for p in range(photos):
            photo = f"n{c:08d}_{100 + p}"
            if p < test_photos:
                test_list.append(f"{name}/{photo}.jpg")
            for n in range(1, sketches_per_photo + 1):
                rel = f"{name}/{photo}-{n}.png"
                grays[rel] = background(len(grays))
                draw_sketch(size, grays[rel], len(grays)).convert("RGB").save(sketch_root / rel)
    info = root / "info"
    info.mkdir()
    (info / "testset.txt").write_text("\n".join(test_list) + "\n")
    (info / "invalid-error.txt").write_text("\n".join(invalid) + "\n")
    for kind in ("ambiguous", "context", "pose"):
        (info / f"invalid-{kind}.txt").write_text("")
    return grays, test_list


def jpeg(color: tuple[int, int, int], hw: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", hw[::-1], color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


SYNSET_COLORS = {"n01440764": (200, 30, 30), "n01443537": (30, 200, 30)}


def ilsvrc_tars(manual_dir: pathlib.Path, per_synset: int, num_val: int) -> list[str]:
    """ILSVRC2012 train/val tars: one solid colour per training synset, odd sizes, and
    one per validation image (:func:`val_colour`).

    Returns the synset of each validation image (the first lines of TFDS's own
    validation label file, which the builder pairs with the sorted file names).
    """
    import tensorflow_datasets as tfds

    manual_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(manual_dir / "ILSVRC2012_img_train.tar", "w") as train:
        for synset, color in SYNSET_COLORS.items():
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as sub:
                for i in range(per_synset):
                    _add(sub, f"{synset}_{i}.JPEG", jpeg(color, (40 + 3 * i, 50)))
            _add(train, f"{synset}.tar", inner.getvalue())
    labels_path = tfds.core.tfds_path("datasets/imagenet2012/validation_labels.txt")
    val_synsets = labels_path.read_text().split()[:num_val]
    with tarfile.open(manual_dir / "ILSVRC2012_img_val.tar", "w") as val:
        for i in range(num_val):
            _add(val, f"ILSVRC2012_val_{i + 1:08d}.JPEG", jpeg(val_colour(i), (48, 44)))
    return val_synsets


def val_colour(index: int) -> tuple[int, int, int]:
    """The solid colour of the ``index``-th fake validation image."""
    return (30 + 50 * index, 220 - 50 * index, 120)
