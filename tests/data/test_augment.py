"""Augmentations do what the recipes say: sizes, value ranges, flips, rotations, crops."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from binflax.data import augment

tf = augment.tf
MEAN, STD = 0.06, 0.93  # TU-Berlin's


def _png(array: np.ndarray) -> tf.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return tf.constant(buffer.getvalue())


def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([7, i], tf.int64) for i in range(n)]


def _asymmetric_sketch(size: int = 64) -> np.ndarray:
    """White page, one black stroke in the left third: mirrored, it is in the right third."""
    image = np.full((size, size), 255, np.uint8)
    image[8:56, 10:14] = 0
    return image


def test_tensorflow_sees_no_accelerator():
    assert {d.device_type for d in tf.config.get_visible_devices()} == {"CPU"}


def test_sketch_train_size_and_value_range():
    encoded = _png(_asymmetric_sketch())
    for seed in _seeds(8):
        out = augment.sketch_train(encoded, seed, size=32, mean=MEAN, std=STD, flip=True).numpy()
        assert out.shape == (32, 32, 1) and out.dtype == np.float32
        # invert then normalize: [0, 1] -> [(0 - mean) / std, (1 - mean) / std]
        assert out.min() >= (0 - MEAN) / STD - 1e-5 and out.max() <= (1 - MEAN) / STD + 1e-5
    blank = _png(np.full((64, 64), 255))
    out = augment.sketch_train(blank, _seeds(1)[0], size=32, mean=MEAN, std=STD, flip=True)
    np.testing.assert_allclose(out, -MEAN / STD, atol=1e-5)  # page and rotation fill agree


def test_flip_is_applied_to_some_of_a_batch_only_when_asked():
    encoded = _png(_asymmetric_sketch())

    def stroke_side(flip: bool, seed) -> str:
        out = augment.sketch_train(
            encoded, seed, size=32, mean=MEAN, std=STD, flip=flip,
            max_degrees=0.0, area_range=(1.0, 1.0),
        ).numpy()[..., 0]  # fmt: skip
        columns = out.sum(axis=0)
        return "left" if columns[:16].sum() > columns[16:].sum() else "right"

    flipped = [stroke_side(True, s) for s in _seeds(32)]
    assert 4 <= flipped.count("right") <= 28  # p = 1/2 each, seeds fixed
    assert {stroke_side(False, s) for s in _seeds(16)} == {"left"}


def _stroke_angle(image: np.ndarray) -> float:
    """Orientation (degrees) of the principal axis of the bright pixels."""
    ys, xs = np.nonzero(image > image.min() + 0.5 * (image.max() - image.min()))
    cov = np.cov(np.stack([xs, ys]).astype(float))
    vals, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, np.argmax(vals)]
    angle = np.degrees(np.arctan2(vy, vx))
    return (angle + 90) % 180 - 90


def test_rotation_is_applied_within_ten_degrees():
    page = np.full((64, 64), 255, np.uint8)
    page[31:33, 8:56] = 0  # a horizontal stroke through the centre
    encoded = _png(page)
    angles = []
    for seed in _seeds(24):
        out = augment.sketch_train(
            encoded, seed, size=64, mean=MEAN, std=STD, flip=False, area_range=(1.0, 1.0)
        ).numpy()[..., 0]
        angles.append(_stroke_angle(out))
    angles = np.array(angles)
    assert np.all(np.abs(angles) <= 10.5)
    assert angles.min() < -2 and angles.max() > 2  # really rotated, both ways


def test_rotate_matches_the_rotation_formula():
    size, c = 33, 16
    image = np.zeros((size, size, 1), np.float32)
    image[c, c + 10, 0] = 1.0  # a point 10 pixels right of the centre
    out = augment.rotate(tf.constant(image), tf.constant(np.pi / 2)).numpy()[..., 0]
    # counter-clockwise by 90 degrees in image coordinates (y down): right -> up.
    y, x = np.unravel_index(np.argmax(out), out.shape)
    assert (y, x) == (c - 10, c)
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-5)


def test_crop_windows_respect_area_and_aspect_ranges():
    shape = tf.constant([200, 300, 1])
    for seed in _seeds(40):
        offset, hw = (t.numpy() for t in augment.crop_window(shape, seed))
        h, w = hw
        assert offset.min() >= 0 and offset[0] + h <= 200 and offset[1] + w <= 300
        whole = (h, w) == (200, 300)  # the fallback when no window fits
        assert whole or 0.08 - 0.01 <= h * w / (200 * 300) <= 1.0
        assert whole or 3 / 4 - 0.02 <= w / h <= 4 / 3 + 0.02


def test_random_resized_crop_is_a_resized_window():
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64, 1)
    seed = _seeds(1)[0]
    offset, hw = (t.numpy() for t in augment.crop_window(tf.shape(image), seed))
    out = augment.random_resized_crop(tf.constant(image), seed, 16).numpy()
    window = image[offset[0] : offset[0] + hw[0], offset[1] : offset[1] + hw[1]]
    assert out.shape == (16, 16, 1)
    assert window.min() - 1e-3 <= out.min() and out.max() <= window.max() + 1e-3


def test_ten_crop_corners_centre_and_mirrors():
    rng = np.random.default_rng(0)
    image = rng.random((40, 37, 1)).astype(np.float32)
    crops = augment.ten_crop(tf.constant(image), 25).numpy()
    assert crops.shape == (10, 25, 25, 1)
    oy, ox = (40 - 25 + 1) // 2, (37 - 25 + 1) // 2
    expected = [
        image[:25, :25], image[:25, -25:], image[-25:, :25], image[-25:, -25:],
        image[oy : oy + 25, ox : ox + 25],
    ]  # fmt: skip
    for i, crop in enumerate(expected):
        np.testing.assert_array_equal(crops[i], crop)
        np.testing.assert_array_equal(crops[5 + i], crop[:, ::-1])
    np.testing.assert_array_equal(augment.centre_crop(tf.constant(image), 25), crops[4])


def test_sketch_eval_is_ten_crops_of_the_resized_inverted_image():
    sketch = _asymmetric_sketch(72)
    out = augment.sketch_eval(_png(sketch), size=32, mean=MEAN, std=STD).numpy()
    assert out.shape == (10, 32, 32, 1)
    resized = augment.resize_shorter(tf.constant(sketch[..., None] / 255.0, tf.float32), 36)
    centre = (1.0 - augment.centre_crop(resized, 32).numpy() - MEAN) / STD
    assert any(np.allclose(crop, centre, atol=1e-5) for crop in out)
    np.testing.assert_allclose(out[4], centre, atol=1e-5)


def test_resize_target_keeps_the_recipe_proportions():
    assert augment.resize_target(225, augment.SKETCH_RESIZE) == 256
    assert augment.resize_target(224, augment.IMAGENET_RESIZE) == 256


def _jpeg(color, hw) -> tf.Tensor:
    buffer = io.BytesIO()
    Image.new("RGB", hw[::-1], color).save(buffer, format="JPEG", quality=100)
    return tf.constant(buffer.getvalue())


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_imagenet_train_and_eval_shapes_and_normalisation(fmt):
    color = (200, 100, 50)
    image = Image.new("RGB", (90, 60), color)
    ImageDraw.Draw(image).rectangle([0, 0, 5, 5], fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, quality=100)
    encoded = tf.constant(buffer.getvalue())
    expected = (np.array(color) / 255 - augment.IMAGENET_MEAN) / augment.IMAGENET_STD
    train = augment.imagenet_train(encoded, _seeds(1)[0], size=24).numpy()
    assert train.shape == (24, 24, 3) and train.dtype == np.float32
    evaluated = augment.imagenet_eval(encoded, size=24).numpy()
    assert evaluated.shape == (24, 24, 3)
    np.testing.assert_allclose(evaluated[12, 12], expected, atol=0.05)  # centre: the colour


def test_augmentations_are_deterministic_per_seed():
    encoded = _png(_asymmetric_sketch())
    a, b, c = (
        augment.sketch_train(encoded, s, size=32, mean=MEAN, std=STD, flip=True).numpy()
        for s in (_seeds(2)[1], _seeds(2)[1], _seeds(1)[0])
    )
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    jpeg = _jpeg((10, 20, 30), (50, 70))
    x, y = (augment.imagenet_train(jpeg, _seeds(1)[0], size=16).numpy() for _ in range(2))
    np.testing.assert_array_equal(x, y)


def test_bitmaps_resize_and_map_to_minus_one_one():
    bitmap = np.zeros((28, 28), np.uint8)
    bitmap[10:18, 4:8] = 255
    flip = augment.TRANSFORMS["flip"]  # QuickDraw's recipe
    options = dict(size=32, channels=1, mean=(0.5,), std=(0.5,))
    train = flip.train(_png(bitmap), _seeds(1)[0], **options).numpy()
    evaluated = flip.evaluate(_png(bitmap), **options).numpy()
    assert train.shape == evaluated.shape == (32, 32, 1)
    assert evaluated.min() == pytest.approx(-1.0) and evaluated.max() == pytest.approx(1.0)


def _rgb(seed: int, hw=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*hw, 3), dtype=np.uint8)


CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def test_crop_flip_is_a_zero_padded_crop_then_a_mirror():
    """Every draw against NumPy: pad 4 with black, cut 32x32 at the drawn offset, mirror
    when drawn, then normalize per channel."""
    image = _rgb(0)
    crop_flip = augment.TRANSFORMS["crop_flip"]
    options = dict(size=32, channels=3, mean=CIFAR_MEAN, std=CIFAR_STD)
    padded = np.pad(image / 255.0, ((4, 4), (4, 4), (0, 0)))
    offsets, mirrors = set(), []
    for seed in _seeds(40):
        offset, mirror = (t.numpy() for t in augment.crop_flip_draws(seed, 4))
        y, x = offset
        expected = padded[y : y + 32, x : x + 32]
        if mirror:
            expected = expected[:, ::-1]
        expected = (expected - CIFAR_MEAN) / CIFAR_STD
        out = crop_flip.train(_png(image), seed, **options).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5)
        offsets.add((int(y), int(x)))
        mirrors.append(bool(mirror))
    assert all(0 <= y <= 8 and 0 <= x <= 8 for y, x in offsets) and len(offsets) > 20
    assert 10 <= sum(mirrors) <= 30


def test_none_and_evaluation_only_normalize_an_image_of_the_right_size():
    image = _rgb(1)
    options = dict(size=32, channels=3, mean=CIFAR_MEAN, std=CIFAR_STD)
    expected = (image / 255.0 - CIFAR_MEAN) / CIFAR_STD
    for name in ("none", "flip", "crop_flip"):
        out = augment.TRANSFORMS[name].evaluate(_png(image), **options).numpy()
        np.testing.assert_allclose(out, expected, atol=1e-5)
    out = augment.TRANSFORMS["none"].train(_png(image), _seeds(1)[0], **options).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_small_transforms_resize_and_convert_channels():
    image = _rgb(2, hw=(20, 30))
    gray = dict(size=16, channels=1, mean=(0.5,), std=(0.25,))
    out = augment.TRANSFORMS["none"].evaluate(_png(image), **gray).numpy()
    assert out.shape == (16, 16, 1)
    resized = tf.image.resize(tf.image.rgb_to_grayscale(image / 255.0), [16, 16]).numpy()
    np.testing.assert_allclose(out, (resized - 0.5) / 0.25, atol=2e-2)


def test_every_augment_name_has_a_transform():
    from binflax.data import recipes

    assert set(augment.TRANSFORMS) == set(recipes.AUGMENTS)
