"""Throughput of the sketch training pipeline: 1111x1111 PNGs versus the stored 256 ones.

    python -m benchmarks.input_pipeline [--images 32] [--repeats 2] [--trials 3]

Stage measured: the per-example host work of a training step, from PNG bytes in memory
to an augmented ``(225, 225, 1)`` float32 array, i.e. :func:`binflax.data.augment.sketch_train`
(PNG decode, resize to 256, random-resized crop 225, flip, rotation, invert, normalize)
inside ``tf.data.Dataset.map``, then batching. Disk reads and the TFDS record parsing
are not included. Two inputs:

- ``png_1111``: TU-Berlin's original 1111x1111 PNGs (what a pipeline reading the
  official files would decode every epoch);
- ``stored_256``: the 256x256 grayscale PNGs the ``tu_berlin`` builder stores, which the
  binflax pipeline decodes every epoch (the 1111 -> 256 reduction is paid once, at
  preparation: ``prepare_ms_per_image``).

Each is run with one thread (``per_core``) and with every core of the machine, best of
``--trials`` (the machine may be shared). The
synthetic sketches are 1111x1111, white, with 25 black strokes 3-6 pixels wide, close to
TU-Berlin's PNGs in size (about 20-40 KB). Prints one JSON object; the ratios are the
figures to compare across machines.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import time

import numpy as np
from PIL import Image, ImageDraw

from binflax.data import augment, sketch_files

tf = augment.tf
SIZE = 225


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


def images_per_second(encoded: list[bytes], threads: int, repeats: int, batch: int = 16) -> float:
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(encoded)).repeat(repeats).enumerate()
    parallel = tf.data.AUTOTUNE if threads > 1 else 1

    def transform(i, x):
        seed = tf.stack([tf.constant(0, tf.int64), i])
        return augment.sketch_train(x, seed, size=SIZE, mean=0.06, std=0.93, flip=True)

    ds = ds.map(transform, num_parallel_calls=parallel).batch(batch).prefetch(2)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the images per trial")
    parser.add_argument("--trials", type=int, default=3, help="the best trial is reported")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    originals = [synthetic_sketch(i) for i in range(args.images)]
    start = time.perf_counter()  # the builder's one-off reduction to 256x256
    stored = [sketch_files.reduced_png(data, f"sketch {i}") for i, data in enumerate(originals)]
    prepare_ms = 1000 * (time.perf_counter() - start) / args.images

    result = {"machine": f"{platform.machine()} {cores}-core CPU", "crop": SIZE}
    for name, encoded in (("png_1111", originals), ("stored_256", stored)):
        one = max(images_per_second(encoded, 1, args.repeats) for _ in range(args.trials))
        every = max(images_per_second(encoded, cores, args.repeats) for _ in range(args.trials))
        result[name] = {
            "kb_per_png": round(float(np.mean([len(e) for e in encoded])) / 1024, 1),
            "images_per_sec_per_core": round(one, 1),
            "images_per_sec_all_cores": round(every, 1),
        }
    result["prepare_ms_per_image"] = round(prepare_ms, 1)
    result["stored_vs_1111_per_core"] = round(
        result["stored_256"]["images_per_sec_per_core"]
        / result["png_1111"]["images_per_sec_per_core"],
        2,
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
