"""Reading sketch folders for the TFDS builders: class folders, checks, stored PNGs.

Why store reduced copies: TU-Berlin's PNGs are 1111x1111, and decoding them is most of
the cost of an input pipeline (see ``benchmarks/input_pipeline.py``). The authors'
recipe resizes every sketch to 256 before cropping anyway, so [choice] the builders store
each sketch once as a 256x256 8-bit grayscale PNG (PIL's antialiasing bilinear resize,
the filter torchvision's ``Resize`` applies to PIL images). Transparent pixels become
white (the sketch background). The sources are square; others are resized to a square.

[choice] An unreadable or corrupt image stops the build with a :class:`DatasetError`
naming its path, rather than being skipped: the split sizes (6,500 TU-Berlin test
sketches) are part of the benchmark, and a half-extracted archive should be re-extracted,
not silently trained on.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from binflax.data.common import DatasetError

STORED_SIZE = 256


def stored_png(path: epath.Path) -> bytes:
    """The sketch at ``path`` as a ``STORED_SIZE`` square 8-bit grayscale PNG."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"cannot read the sketch {path}: {err}") from err
    return reduced_png(data, str(path))


def reduced_png(data: bytes, source: str) -> bytes:
    """Encoded image ``data`` (read from ``source``) as the stored grayscale PNG."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if "A" in image.getbands() or "transparency" in image.info:
                image = image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
            gray = image.convert("L")
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(
            f"cannot read the sketch {source}: {err}. The file is corrupt or not an image; "
            "re-extract the archive (or delete the file) and prepare the dataset again."
        ) from err
    if gray.size != (STORED_SIZE, STORED_SIZE):
        gray = gray.resize((STORED_SIZE, STORED_SIZE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    return buffer.getvalue()


def _order(path: epath.Path) -> tuple:
    """Numeric file names in numeric order (TU-Berlin's 1.png, 2.png, ...), others by name."""
    return (0, int(path.stem), "") if path.stem.isdigit() else (1, 0, path.name)


def class_folders(root: epath.Path) -> dict[str, list[epath.Path]]:
    """``{class name: its PNG files in a fixed order}`` for every sub-folder of ``root``.

    An empty class folder is an error: it means an incomplete extraction.
    """
    classes: dict[str, list[epath.Path]] = {}
    for folder in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.name):
        pngs = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png"), key=_order)
        if not pngs:
            raise DatasetError(
                f"the class folder {folder} holds no PNG sketches; re-extract the archive"
            )
        classes[folder.name] = pngs
    if not classes:
        raise DatasetError(f"no class folders in {root}; re-extract the archive")
    return classes


def check_class_count(
    classes: Sequence[str], expected: int, root: epath.Path, dataset: str
) -> None:
    """An incomplete extraction shows as missing classes: say so before building."""
    if len(classes) != expected:
        raise DatasetError(
            f"{dataset}: found {len(classes)} class folders in {root}, expected {expected}; "
            "the extraction is incomplete or the folder is not the official one"
        )


def sketch_dataset_info(builder, description: str, homepage: str, citation: str):
    """The TFDS ``DatasetInfo`` both sketch builders share: a stored 256x256 grayscale
    PNG, its class label (named by the class folders) and its file name."""
    return tfds.core.DatasetInfo(
        builder=builder,
        description=description,
        features=tfds.features.FeaturesDict(
            {
                "image": tfds.features.Image(
                    shape=(STORED_SIZE, STORED_SIZE, 1), encoding_format="png"
                ),
                "label": tfds.features.ClassLabel(),
                "file_name": tfds.features.Text(),  # <class>/<file>.png
            }
        ),
        supervised_keys=("image", "label"),
        homepage=homepage,
        citation=citation,
    )


def examples(items: Sequence[tuple[str, epath.Path]]):
    """A split's ``(key, example)`` pairs for ``_split_generators``, keyed by
    ``<class>/<file>`` (the key TFDS shuffles by, and the stored ``file_name``)."""
    for class_name, path in items:
        key = f"{class_name}/{path.name}"
        yield key, {"image": stored_png(path), "label": class_name, "file_name": key}
