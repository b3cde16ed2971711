"""Training augmentations and evaluation crops, as TensorFlow ops for ``tf.data``.

Why TensorFlow: these run inside ``tf.data.Dataset.map`` on the host's CPUs while the
accelerator trains. Why *stateless* random ops with an explicit ``seed`` (an integer
tensor of shape ``[2]``): the pipeline derives every example's seed from (run seed,
epoch, position in the epoch), so a run restarted at step ``s`` draws exactly the crops,
flips and angles the uninterrupted run drew.

Recipes (docs/method.md section 9):

- sketches: grayscale, resize to 256, random-resized crop 225, horizontal flip (not for
  Sketchy), rotation within +-10 degrees, invert (``1 - x``, strokes become 1 on a 0
  background), normalize; evaluation takes ten crops of the 256 image (four corners and
  the centre, each also mirrored), in torchvision's ``TenCrop`` order;
- ImageNet: random-resized crop 224 and flip; evaluation resizes the shorter side to 256
  and takes the centre 224; mean/std normalisation with the usual ImageNet statistics;
- the small benchmarks (MNIST, CIFAR, image folders): ``none``, ``flip`` and
  ``crop_flip`` (zero-pad 4, random crop back to size, flip); evaluation resizes to the
  size and normalizes.

:data:`TRANSFORMS` gives each ``config.augment`` name (``binflax.data.recipes.AUGMENTS``)
one calling convention for the pipelines.

Sizes scale with ``config.image_size``: the resize target is ``round(size * 256 / 225)``
for sketches and ``round(size * 256 / 224)`` for ImageNet, so a small test image size
keeps the recipe's proportions. Random-resized crops follow torchvision's defaults: area
in [0.08, 1] of the image, aspect ratio in [3/4, 4/3], the whole image when ten draws
find no window. [choice] The rotation fills the uncovered corners with the background
(0 after inversion), so rotating adds no stroke-like edges.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

from binflax.data.common import tensorflow

tf = tensorflow()

AREA_RANGE = (0.08, 1.0)
RATIO_RANGE = (3 / 4, 4 / 3)
SKETCH_RESIZE = 256 / 225
SKETCH_MAX_DEGREES = 10.0
IMAGENET_RESIZE = 256 / 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_target(size: int, ratio: float) -> int:
    """The pre-crop resize for a crop of ``size`` (256 for 225 or 224)."""
    return round(size * ratio)


def decode(encoded: tf.Tensor, channels: int) -> tf.Tensor:
    """PNG or JPEG bytes -> float32 ``(H, W, channels)`` in [0, 1]."""
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32)


def resize_shorter(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (antialiased)."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    new_hw = tf.cast(tf.round(hw * (size / tf.reduce_min(hw))), tf.int32)
    return tf.image.resize(image, tf.maximum(new_hw, size), antialias=True)


def crop_window(
    image_shape: tf.Tensor,
    seed: tf.Tensor,
    area_range: tuple[float, float] = AREA_RANGE,
    ratio_range: tuple[float, float] = RATIO_RANGE,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A random-resized-crop window ``(offset_yx, size_hw)`` inside ``image_shape``."""
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        image_shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=ratio_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[:2], size[:2]


def random_resized_crop(
    image: tf.Tensor,
    seed: tf.Tensor,
    size: int,
    area_range: tuple[float, float] = AREA_RANGE,
    ratio_range: tuple[float, float] = RATIO_RANGE,
) -> tf.Tensor:
    """A random window of ``image`` resized (bilinear) to ``size x size``."""
    offset, hw = crop_window(tf.shape(image), seed, area_range, ratio_range)
    window = tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([hw, [-1]], 0))
    return tf.image.resize(window, [size, size])


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mirror ``image`` left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)


def rotate(image: tf.Tensor, radians: tf.Tensor, fill_value: float = 0.0) -> tf.Tensor:
    """Rotate ``(H, W, C)`` counter-clockwise about its centre (bilinear, constant fill).

    Output pixel ``q`` samples the input at ``c + R (q - c)``, with ``R`` the rotation by
    ``radians`` in image coordinates (x right, y down) and ``c`` the centre.
    """
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    cos, sin = tf.cos(radians), tf.sin(radians)
    x_offset = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2
    y_offset = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2
    transform = tf.stack([cos, -sin, x_offset, sin, cos, y_offset, 0.0, 0.0])
    rotated = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None],
        transforms=transform[None],
        output_shape=tf.shape(image)[:2],
        fill_value=fill_value,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return rotated[0]


def ten_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """``(10, size, size, C)``: top-left, top-right, bottom-left, bottom-right, centre,
    then the same five mirrored left-right (torchvision's ``TenCrop`` order)."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    offsets = [
        (0, 0),
        (0, w - size),
        (h - size, 0),
        (h - size, w - size),
        ((h - size + 1) // 2, (w - size + 1) // 2),
    ]
    crops = tf.stack([image[y : y + size, x : x + size] for y, x in offsets])
    crops = tf.ensure_shape(crops, [5, size, size, image.shape[-1]])
    return tf.concat([crops, tf.image.flip_left_right(crops)], axis=0)


def centre_crop(image: tf.Tensor, size: int) -> tf.Tensor:
    """The central ``size x size`` window (the fifth of :func:`ten_crop`)."""
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    y, x = (h - size + 1) // 2, (w - size + 1) // 2
    return tf.ensure_shape(image[y : y + size, x : x + size], [size, size, image.shape[-1]])


def sketch_train(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    mean: float,
    std: float,
    flip: bool,
    max_degrees: float = SKETCH_MAX_DEGREES,
    area_range: tuple[float, float] = AREA_RANGE,
) -> tf.Tensor:
    """The authors' sketch training transform: ``(size, size, 1)`` float32."""
    crop_seed, flip_seed, angle_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    image = resize_shorter(decode(encoded, 1), resize_target(size, SKETCH_RESIZE))
    image = random_resized_crop(image, crop_seed, size, area_range)
    if flip:
        image = random_flip(image, flip_seed)
    degrees = tf.random.stateless_uniform([], angle_seed, -max_degrees, max_degrees)
    image = rotate(1.0 - image, degrees * (math.pi / 180), fill_value=0.0)
    return (image - mean) / std


def sketch_eval(encoded: tf.Tensor, *, size: int, mean: float, std: float) -> tf.Tensor:
    """The authors' sketch test transform: ``(10, size, size, 1)`` float32."""
    image = resize_shorter(decode(encoded, 1), resize_target(size, SKETCH_RESIZE))
    return (ten_crop(1.0 - image, size) - mean) / std


def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """``(image - mean) / std`` per channel (a single value applies to every channel)."""
    return (image - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def _encoded_shape(encoded: tf.Tensor) -> tf.Tensor:
    """``[H, W, 3]`` read from a JPEG header without decoding (other formats: decoded)."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.concat([tf.image.extract_jpeg_shape(encoded)[:2], [3]], 0),
        lambda: tf.shape(tf.io.decode_image(encoded, channels=3, expand_animations=False)),
    )


def _decode_window(encoded: tf.Tensor, offset: tf.Tensor, hw: tf.Tensor) -> tf.Tensor:
    """Decode only the window (JPEG's partial decode), uint8 ``(h, w, 3)``."""

    def full() -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([hw, [3]], 0))

    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.image.decode_and_crop_jpeg(encoded, tf.concat([offset, hw], 0), channels=3),
        full,
    )


def imagenet_train(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tf.Tensor:
    """Random-resized crop + flip + normalisation: ``(size, size, 3)`` float32."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offset, hw = crop_window(_encoded_shape(encoded), crop_seed)
    window = tf.image.convert_image_dtype(_decode_window(encoded, offset, hw), tf.float32)
    image = random_flip(tf.image.resize(window, [size, size]), flip_seed)
    return normalize(image, mean, std)


def imagenet_eval(
    encoded: tf.Tensor,
    *,
    size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> tf.Tensor:
    """Resize the shorter side to 256 (for 224), centre crop: ``(size, size, 3)``."""
    image = resize_shorter(decode(encoded, 3), resize_target(size, IMAGENET_RESIZE))
    return normalize(centre_crop(image, size), mean, std)


def decode_resized(encoded: tf.Tensor, *, size: int, channels: int) -> tf.Tensor:
    """``(size, size, channels)`` in [0, 1]; an image already of that size is not resampled."""
    image = decode(encoded, channels)
    same = tf.reduce_all(tf.shape(image)[:2] == size)
    image = tf.cond(same, lambda: image, lambda: tf.image.resize(image, [size, size]))
    return tf.ensure_shape(image, [size, size, channels])


def crop_flip_draws(seed: tf.Tensor, pad: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The random part of ``crop_flip``: the crop's ``(y, x)`` offset in the padded image,
    each uniform in ``[0, 2 * pad]``, and whether to mirror (probability 1/2)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    offset = tf.random.stateless_uniform([2], crop_seed, 0, 2 * pad + 1, dtype=tf.int32)
    return offset, tf.random.stateless_uniform([], flip_seed) < 0.5


def pad_crop(image: tf.Tensor, offset: tf.Tensor, pad: int) -> tf.Tensor:
    """Zero-pad ``image`` by ``pad`` on each side and cut its size back out at ``offset``."""
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    return tf.slice(padded, tf.concat([offset, [0]], 0), tf.shape(image))


def small_train(
    encoded: tf.Tensor,
    seed: tf.Tensor,
    *,
    size: int,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool,
    pad: int = 0,
) -> tf.Tensor:
    """``none``, ``flip`` and ``crop_flip``: the small benchmarks' transforms.

    [choice] The crop pads with zeros in [0, 1] before normalization, as torchvision's
    ``RandomCrop(32, padding=4)`` pads the image itself: the border is black.
    """
    image = decode_resized(encoded, size=size, channels=channels)
    offset, mirror = crop_flip_draws(seed, pad)
    if pad:
        image = pad_crop(image, offset, pad)
    if flip:
        image = tf.cond(mirror, lambda: tf.image.flip_left_right(image), lambda: image)
    return normalize(image, mean, std)


def small_eval(
    encoded: tf.Tensor, *, size: int, channels: int, mean: Sequence[float], std: Sequence[float]
) -> tf.Tensor:
    """Evaluation for the small benchmarks: decode, resize to ``size``, normalize."""
    return normalize(decode_resized(encoded, size=size, channels=channels), mean, std)


@dataclasses.dataclass(frozen=True)
class Transform:
    """One ``config.augment`` choice as the pipelines call it.

    ``train(encoded, seed, *, size, channels, mean, std)`` and ``evaluate(encoded, *,
    size, channels, mean, std)``; ``evaluate`` returns ``(eval_crops, size, size, C)``
    when ``eval_crops > 1``.
    """

    train: Callable
    evaluate: Callable
    eval_crops: int = 1


def _sketch(flip: bool) -> Transform:
    def train(encoded, seed, *, size, channels, mean, std):
        del channels  # sketches are grayscale
        return sketch_train(encoded, seed, size=size, mean=mean[0], std=std[0], flip=flip)

    def evaluate(encoded, *, size, channels, mean, std):
        del channels
        return sketch_eval(encoded, size=size, mean=mean[0], std=std[0])

    return Transform(train, evaluate, eval_crops=10)


def _imagenet_train(encoded, seed, *, size, channels, mean, std):
    del channels  # always RGB
    return imagenet_train(encoded, seed, size=size, mean=mean, std=std)


def _imagenet_eval(encoded, *, size, channels, mean, std):
    del channels
    return imagenet_eval(encoded, size=size, mean=mean, std=std)


TRANSFORMS = {
    "none": Transform(functools.partial(small_train, flip=False), small_eval),
    "flip": Transform(functools.partial(small_train, flip=True), small_eval),
    "crop_flip": Transform(functools.partial(small_train, flip=True, pad=4), small_eval),
    "sketch": _sketch(flip=False),
    "sketch_flip": _sketch(flip=True),
    "imagenet": Transform(_imagenet_train, _imagenet_eval),
}
