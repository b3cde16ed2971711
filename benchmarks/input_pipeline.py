"""Host throughput of the training input pipelines: sketches (PNG) and ImageNet (JPEG).

    python -m benchmarks.input_pipeline [--images 32] [--repeats 2] [--trials 3]

Stage measured: the per-example host work of a training step, from encoded bytes in
memory to the augmented float32 array the step takes, i.e. the dataset recipe's own
``train`` transform (``binflax.data.recipes``) inside ``tf.data.Dataset.map``, then
batching. Disk or bucket reads and TFDS record parsing are not included. Three inputs:

- ``png_1111``: TU-Berlin's original 1111x1111 PNGs (what a pipeline reading the
  official files would decode every epoch), through the ``tu_berlin`` recipe (225 crop);
- ``stored_256``: the 256x256 grayscale PNGs the ``tu_berlin`` builder stores, which the
  binflax pipeline decodes every epoch (the 1111 -> 256 reduction is paid once, at
  preparation: ``prepare_ms_per_image``);
- ``imagenet_jpeg``: ImageNet-like 500x375 JPEGs (quality 90, ~110 KB, about ImageNet's
  average) through the ``imagenet2012`` recipe: partial JPEG decode of a random-resized
  window, resize to 224, flip, normalisation.

Each is run with one thread (``per_core``) and with every core of the machine, best of
``--trials`` (the machine may be shared). The synthetic sketches are white with 25 black
strokes 3-6 pixels wide, close to TU-Berlin's PNGs in size (about 20-40 KB); the
synthetic photographs are smooth random colour fields with fine noise. Prints one JSON
object. How many host cores an accelerator needs is its images per second divided by
the per-core figure (``benchmarks/accelerator.py`` prints it for every model).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from benchmarks import output
from binflax.data import augment, recipes, sketch_files

tf = augment.tf
SKETCH_SIZE = 225
IMAGENET_SIZE = 224
PHOTO_SHAPE = (375, 500)  # height, width


def synthetic_sketch(seed: int, size: int = 1111) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        points = [tuple(int(v) for v in rng.integers(100, size - 100, 2)) for _ in range(4)]
        draw.line(points, fill=0, width=int(rng.integers(3, 7)), joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def synthetic_photo(seed: int, shape: tuple[int, int] = PHOTO_SHAPE) -> bytes:
    """A JPEG about as large as an average ImageNet training image."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    smooth = np.asarray(coarse.resize(shape[::-1], Image.BICUBIC), np.float32)
    pixels = np.clip(smooth + rng.normal(0.0, 24.0, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def transform(dataset: str, size: int) -> Callable:
    """The recipe's training transform of ``dataset`` at ``size``: ``(encoded, seed) -> image``."""
    recipe = recipes.recipe(dataset)
    train = augment.TRANSFORMS[recipe.augment].train
    options = dict(size=size, channels=recipe.channels, mean=recipe.mean, std=recipe.std)

    def apply(encoded, seed):
        return train(encoded, seed, **options)

    return apply


def images_per_second(
    encoded: list[bytes], fn: Callable, threads: int, repeats: int, batch: int = 16
) -> float:
    """Images per second through ``fn`` in a ``tf.data`` map with ``threads`` threads
    (the first batch, a warm-up, is not timed; at least three batches are)."""
    batch = max(1, min(batch, len(encoded) * repeats // 4))
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(encoded)).repeat(repeats).enumerate()
    parallel = tf.data.AUTOTUNE if threads > 1 else 1

    def prepare(i, x):
        return fn(x, tf.stack([tf.constant(0, tf.int64), i]))

    ds = ds.map(prepare, num_parallel_calls=parallel).batch(batch).prefetch(2)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(options)
    for _ in ds.take(1):  # warm-up: tracing, thread pools
        pass
    count, start = 0, time.perf_counter()
    for images in ds.skip(1):
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def measure(encoded: list[bytes], fn: Callable, repeats: int, trials: int) -> dict:
    """Best-of-``trials`` images per second on one core and on every core."""
    one = max(images_per_second(encoded, fn, 1, repeats) for _ in range(trials))
    every = max(images_per_second(encoded, fn, output.host_cores(), repeats) for _ in range(trials))
    return {
        "kb_per_image": round(float(np.mean([len(e) for e in encoded])) / 1024, 1),
        "images_per_sec_per_core": round(one, 1),
        "images_per_sec_all_cores": round(every, 1),
    }


def per_core_rates(images: int, repeats: int, trials: int) -> dict[str, dict]:
    """What an accelerator's pipeline costs the host, by kind: ``sketch`` (the stored
    256x256 PNGs, TU-Berlin recipe) and ``imagenet`` (JPEGs, ImageNet recipe)."""
    sketches = [sketch_files.reduced_png(synthetic_sketch(i), f"sketch {i}") for i in range(images)]
    photos = [synthetic_photo(i) for i in range(images)]
    return {
        "sketch": measure(sketches, transform("tu_berlin", SKETCH_SIZE), repeats, trials),
        "imagenet": measure(photos, transform("imagenet2012", IMAGENET_SIZE), repeats, trials),
    }


def run(args: argparse.Namespace) -> dict:
    """Each input's host rate, per core and on every core, and the one-off reduction."""
    originals = [synthetic_sketch(i) for i in range(args.images)]
    start = time.perf_counter()  # the builder's one-off reduction to 256x256
    stored = [sketch_files.reduced_png(data, f"sketch {i}") for i, data in enumerate(originals)]
    prepare_ms = 1000 * (time.perf_counter() - start) / args.images
    photos = [synthetic_photo(i) for i in range(args.images)]

    sketch = transform("tu_berlin", SKETCH_SIZE)
    result = {
        "machine": f"{platform.machine()} {output.host_cores()}-core CPU",
        "png_1111": measure(originals, sketch, args.repeats, args.trials),
        "stored_256": measure(stored, sketch, args.repeats, args.trials),
        "imagenet_jpeg": measure(
            photos, transform("imagenet2012", IMAGENET_SIZE), args.repeats, args.trials
        ),
        "prepare_ms_per_image": round(prepare_ms, 1),
    }
    result["stored_vs_1111_per_core"] = round(
        result["stored_256"]["images_per_sec_per_core"]
        / result["png_1111"]["images_per_sec_per_core"],
        2,
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the images per trial")
    parser.add_argument("--trials", type=int, default=3, help="the best trial is reported")
    output.add_out_option(parser)
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=1))
    output.write("input_pipeline", result, args.out)


if __name__ == "__main__":
    main()
