"""Tests for the shared image transforms: RGB conversion rule, torchvision-exact resize and crop, normalisation."""

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.processing.image_transforms import center_crop, resize_short_side, to_normalized_array, to_rgb_image


def _coded_image(width: int, height: int) -> Image.Image:
    """An RGB image whose red/green channels encode the column/row, so crops reveal their offsets."""
    columns, rows = np.meshgrid(np.arange(width), np.arange(height))
    array = np.stack([columns, rows, np.full_like(columns, 200)], axis=-1).astype(np.uint8)
    return Image.fromarray(array, mode="RGB")


# ---- to_rgb_image: PIL ----


def test_rgb_pil_image_is_returned_as_is():
    image = Image.new("RGB", (4, 3), (1, 2, 3))
    assert to_rgb_image(image) is image


def test_rgba_drops_alpha_without_compositing():
    image = Image.new("RGBA", (2, 2), (10, 20, 30, 0))
    converted = to_rgb_image(image)
    assert converted.mode == "RGB"
    assert converted.getpixel((0, 0)) == (10, 20, 30)


def test_grayscale_and_la_replicate_luminance():
    assert to_rgb_image(Image.new("L", (2, 2), 77)).getpixel((1, 1)) == (77, 77, 77)
    assert to_rgb_image(Image.new("LA", (2, 2), (90, 5))).getpixel((0, 1)) == (90, 90, 90)


def test_palette_and_bilevel_images_use_their_colours():
    palette_image = Image.new("P", (2, 1))
    palette_image.putpalette([0, 0, 0, 250, 100, 50] + [0] * (256 * 3 - 6))
    palette_image.putpixel((1, 0), 1)
    converted = to_rgb_image(palette_image)
    assert converted.getpixel((0, 0)) == (0, 0, 0)
    assert converted.getpixel((1, 0)) == (250, 100, 50)
    assert to_rgb_image(Image.new("1", (1, 1), 1)).getpixel((0, 0)) == (255, 255, 255)


def test_cmyk_converts_like_pil():
    image = Image.new("CMYK", (1, 1), (0, 255, 255, 0))
    assert to_rgb_image(image).getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["F", "I", "I;16", "LAB"])
def test_modes_without_a_meaningful_rgb_conversion_raise(mode):
    with pytest.raises(ValueError, match=f"mode '{mode}'"):
        to_rgb_image(Image.new(mode, (2, 2)))


# ---- to_rgb_image: numpy and torch ----


def test_numpy_layouts():
    gray = np.array([[0, 128], [255, 7]], dtype=np.uint8)
    for array in (gray, gray[..., None]):
        converted = np.asarray(to_rgb_image(array))
        assert converted.shape == (2, 2, 3)
        np.testing.assert_array_equal(converted[..., 1], gray)
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(rgb)), rgb)
    rgba = np.concatenate([rgb, np.zeros((2, 3, 1), dtype=np.uint8)], axis=-1)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(rgba)), rgb)


def test_numpy_rejects_float_and_bad_shapes():
    with pytest.raises(ValueError, match="uint8"):
        to_rgb_image(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(5, 6, 2\)"):
        to_rgb_image(np.zeros((5, 6, 2), dtype=np.uint8))


def test_tensor_layouts_and_dtypes_agree():
    hwc = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = hwc.numpy()
    np.testing.assert_array_equal(np.asarray(to_rgb_image(hwc)), expected)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(hwc.permute(2, 0, 1))), expected)
    # x / 255 (what ToTensor produces) must come back to the exact uint8 values.
    as_float = hwc.permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(np.asarray(to_rgb_image(as_float)), expected)


def test_tensor_rejects_out_of_range_dtype_and_shape():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_image(torch.full((3, 2, 2), 2.0))
    with pytest.raises(ValueError, match="int64"):
        to_rgb_image(torch.zeros((3, 2, 2), dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\(4, 2, 2\)"):
        to_rgb_image(torch.zeros((4, 2, 2), dtype=torch.uint8))


@pytest.mark.parametrize(
    "image",
    [Image.new("RGB", (0, 5)), np.zeros((0, 4, 3), dtype=np.uint8), torch.zeros((3, 4, 0), dtype=torch.uint8)],
    ids=["pil", "numpy", "torch"],
)
def test_zero_size_images_name_the_argument_and_size(image):
    with pytest.raises(ValueError, match=r"images\[2\] is an empty image of size \d+x\d+"):
        to_rgb_image(image, argument_name="images[2]")


@pytest.mark.parametrize("value", ["photo.png", [Image.new("RGB", (2, 2))], 3])
def test_other_types_raise_type_error(value):
    with pytest.raises(TypeError, match=type(value).__name__):
        to_rgb_image(value)


# ---- resize_short_side ----


@pytest.mark.parametrize(
    ("size_in", "short", "size_out"),
    # Sizes from the MS-CLIP preprocessing fixture notes, plus (7, 3) -> 2 where 2 * 7 / 3 = 4.67 truncates to 4.
    [
        ((63, 38), 224, (371, 224)),
        ((63, 38), 96, (159, 96)),
        ((31, 45), 224, (224, 325)),
        ((31, 45), 96, (96, 139)),
        ((7, 3), 2, (4, 2)),
    ],
)
def test_resize_truncates_the_long_side(size_in, short, size_out):
    assert resize_short_side(_coded_image(*size_in), short).size == size_out


def test_resize_uses_pil_bicubic_and_skips_matching_short_side():
    image = _coded_image(40, 30)
    np.testing.assert_array_equal(
        np.asarray(resize_short_side(image, 12)), np.asarray(image.resize((16, 12), Image.Resampling.BICUBIC))
    )
    np.testing.assert_array_equal(
        np.asarray(resize_short_side(image, 12, resample=Image.Resampling.NEAREST)),
        np.asarray(image.resize((16, 12), Image.Resampling.NEAREST)),
    )
    assert resize_short_side(image, 30) is image


def test_resize_rejects_bad_size():
    with pytest.raises(ValueError, match="size"):
        resize_short_side(_coded_image(4, 4), 0)


# ---- center_crop ----


@pytest.mark.parametrize(
    ("width", "crop", "left"),
    # (371 - 224) / 2 = 73.5 -> 74; (7 - 4) / 2 = 1.5 -> 2; (9 - 4) / 2 = 2.5 -> 2 (half to even); 6 -> 1.
    [(371, 224, 74), (7, 4, 2), (9, 4, 2), (6, 4, 1)],
)
def test_center_crop_offsets_round_half_to_even(width, crop, left):
    cropped = center_crop(_coded_image(width, crop), crop)
    assert cropped.size == (crop, crop)
    assert cropped.getpixel((0, 0))[0] == left


def test_center_crop_vertical_offset_and_rectangular_size():
    cropped = center_crop(_coded_image(10, 9), (4, 6))
    assert cropped.size == (6, 4)
    assert cropped.getpixel((0, 0))[:2] == (2, 2)  # left (10-6)/2 = 2, top (9-4)/2 = 2.5 -> 2


def test_center_crop_pads_small_images_with_zeros_like_torchvision():
    image = Image.new("RGB", (3, 2), (9, 9, 9))
    array = np.asarray(center_crop(image, (5, 6)))
    # torchvision pads (crop - side) // 2 before: 1 column left, 1 row on top; the rest after.
    assert array.shape == (5, 6, 3)
    assert (array[1:3, 1:4] == 9).all()
    assert array.sum() == 9 * 3 * 6


def test_center_crop_pads_one_side_and_crops_the_other():
    array = np.asarray(center_crop(_coded_image(10, 2), 4))
    assert array.shape == (4, 4, 3)
    assert (array[0] == 0).all() and (array[3] == 0).all()
    np.testing.assert_array_equal(array[1, :, 0], [3, 4, 5, 6])  # left = round((10 - 4) / 2) = 3


# ---- to_normalized_array ----


def test_to_normalized_array_matches_the_formula():
    image = Image.fromarray(np.array([[[0, 128, 255], [10, 20, 30]]], dtype=np.uint8), mode="RGB")
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    array = to_normalized_array(image, mean, std)
    assert array.dtype == np.float32 and array.shape == (3, 1, 2)
    pixels = np.array([[0, 128, 255], [10, 20, 30]], dtype=np.float64).T.reshape(3, 1, 2)
    expected = (pixels / 255 - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]
    np.testing.assert_allclose(array, expected, atol=1e-6)


def test_to_normalized_array_validates_arguments():
    image = Image.new("RGB", (2, 2))
    with pytest.raises(ValueError, match="3 values"):
        to_normalized_array(image, [0.5], [0.5])
    with pytest.raises(ValueError, match="positive"):
        to_normalized_array(image, [0.5] * 3, [0.5, 0.0, 0.5])
    with pytest.raises(ValueError, match="mode 'L'"):
        to_normalized_array(Image.new("L", (2, 2)), [0.5] * 3, [0.5] * 3)
