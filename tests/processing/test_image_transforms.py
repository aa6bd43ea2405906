"""Tests for the shared image transforms: RGB conversion rule, torchvision-exact resize and crop, normalisation."""

import base64

import numpy as np
import pytest
import torch
from PIL import Image

from tests.processing.image_server import serve_directory, write_images
from vlzoo.processing.image_transforms import (
    center_crop,
    load_image_source,
    resize_short_side,
    resize_to,
    to_normalized_array,
    to_pixel_array,
    to_rgb_image,
)


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


def test_numpy_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"numpy array of shape \(5, 6, 2\)"):
        to_rgb_image(np.zeros((5, 6, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 3\)"):
        to_rgb_image(np.zeros((2, 3, 4, 3), dtype=np.uint8))


def test_tensor_layouts_and_dtypes_agree():
    hwc = torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    expected = hwc.numpy()
    np.testing.assert_array_equal(np.asarray(to_rgb_image(hwc)), expected)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(hwc.permute(2, 0, 1))), expected)
    # x / 255 (what ToTensor produces) must come back to the exact uint8 values, in any float precision.
    as_float = hwc.permute(2, 0, 1).float() / 255
    np.testing.assert_array_equal(np.asarray(to_rgb_image(as_float)), expected)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(as_float.double())), expected)
    assert np.abs(np.asarray(to_rgb_image(as_float.bfloat16())).astype(int) - expected).max() <= 1


def test_numpy_arrays_follow_the_same_value_rule_as_tensors():
    hwc = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    for scaled in (hwc / 255.0, (hwc / 255.0).astype(np.float32), torch.from_numpy(hwc / 255.0)):
        np.testing.assert_array_equal(np.asarray(to_rgb_image(scaled)), hwc)


NON_8BIT = {
    "uint16": np.full((4, 4, 3), 300, dtype=np.uint16),
    "int32": np.zeros((4, 4), dtype=np.int32),
    "bool": np.zeros((4, 4), dtype=bool),
    "float above 1": np.full((4, 4, 3), 1.5, dtype=np.float32),
    "float below 0": np.full((4, 4, 3), -0.25, dtype=np.float64),
    "float nan": np.full((4, 4, 3), np.nan, dtype=np.float32),
}


@pytest.mark.parametrize("as_tensor", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("name", list(NON_8BIT))
def test_non_8bit_values_raise_for_arrays_and_tensors(name, as_tensor):
    array = NON_8BIT[name]
    image = torch.from_numpy(array) if as_tensor else array
    kind = "tensor" if as_tensor else "numpy array"
    with pytest.raises(ValueError, match=rf"^images\[3\] is a (float )?{kind}") as error:
        to_rgb_image(image, argument_name="images[3]")
    if name.startswith("float"):
        assert "outside [0, 1]" in str(error.value)
    else:
        assert "expected uint8 values in 0..255 or floats in [0, 1]" in str(error.value)


def test_input_data_format_settles_ambiguous_layouts():
    # (3, 4, 3): channels could be first or last. Arrays default to channels-last, tensors to channels-first.
    array = np.arange(36, dtype=np.uint8).reshape(3, 4, 3)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(array)), array)
    first = np.asarray(to_rgb_image(array, input_data_format="channels_first"))
    np.testing.assert_array_equal(first, np.moveaxis(array, 0, -1))
    tensor = torch.from_numpy(array)
    np.testing.assert_array_equal(np.asarray(to_rgb_image(tensor)), np.moveaxis(array, 0, -1))
    np.testing.assert_array_equal(np.asarray(to_rgb_image(tensor, input_data_format="channels_last")), array)
    with pytest.raises(ValueError, match="input_data_format"):
        to_rgb_image(array, input_data_format="hwc")
    with pytest.raises(ValueError, match=r"\(5, 6, 3\)"):
        to_rgb_image(np.zeros((5, 6, 3), dtype=np.uint8), input_data_format="channels_first")


def test_gray_and_rgba_tensors():
    gray = torch.tensor([[0, 128], [255, 7]], dtype=torch.uint8)
    for image in (gray, gray[None], gray[..., None]):
        np.testing.assert_array_equal(np.asarray(to_rgb_image(image))[..., 2], gray.numpy())
    rgba = torch.zeros((4, 2, 2), dtype=torch.uint8)
    rgba[0], rgba[3] = 200, 9
    assert to_rgb_image(rgba).getpixel((1, 1)) == (200, 0, 0)


def test_tensor_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"tensor of shape \(2, 5, 5\)"):
        to_rgb_image(torch.zeros((2, 5, 5), dtype=torch.uint8))


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


def test_to_pixel_array_options():
    image = Image.fromarray(np.array([[[0, 128, 255], [10, 20, 30]]], dtype=np.uint8), mode="RGB")
    raw = np.array([[0, 128, 255], [10, 20, 30]], dtype=np.float32).T.reshape(3, 1, 2)
    np.testing.assert_array_equal(to_pixel_array(image, None), raw)
    np.testing.assert_array_equal(to_pixel_array(image), raw / np.float32(255))
    np.testing.assert_allclose(to_pixel_array(image, 1 / 127.5), raw / 127.5, rtol=1e-6)
    np.testing.assert_allclose(to_pixel_array(image, None, [100.0] * 3, [2.0] * 3), (raw - 100) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="together"):
        to_pixel_array(image, mean=[0.5] * 3)
    with pytest.raises(ValueError, match="rescale_factor"):
        to_pixel_array(image, 0)


# ---- resize_to ----


def test_resize_to_gives_exactly_height_by_width():
    image = _coded_image(40, 30)
    resized = resize_to(image, (12, 20), resample=Image.Resampling.BILINEAR)
    assert resized.size == (20, 12)
    np.testing.assert_array_equal(np.asarray(resized), np.asarray(image.resize((20, 12), Image.Resampling.BILINEAR)))
    with pytest.raises(ValueError, match="size"):
        resize_to(image, (0, 4))


# ---- load_image_source ----


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("sources"))


def test_load_image_source_reads_paths_and_base64_keeping_the_mode(image_files):
    expected = np.asarray(Image.open(image_files["rgb"]))
    np.testing.assert_array_equal(np.asarray(load_image_source(str(image_files["rgb"]))), expected)
    encoded = base64.b64encode(image_files["rgb"].read_bytes()).decode()
    np.testing.assert_array_equal(np.asarray(load_image_source(encoded)), expected)
    np.testing.assert_array_equal(np.asarray(load_image_source(f"data:image/png;base64,{encoded}")), expected)
    # The 16-bit file keeps its mode, so to_rgb_image can refuse it (transformers' load_image would clip it).
    gray16 = load_image_source(str(image_files["gray16"]))
    assert gray16.mode == "I;16" and np.asarray(gray16).max() == 40000
    with pytest.raises(ValueError, match=r"images\[1\] has PIL mode 'I;16'"):
        to_rgb_image(gray16, argument_name="images[1]")


def test_load_image_source_reads_urls(image_files):
    with serve_directory(image_files["rgb"].parent) as base_url:
        loaded = load_image_source(f"{base_url}/rgb.png", timeout=10)
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(Image.open(image_files["rgb"])))
        assert load_image_source(f"{base_url}/gray16.png", timeout=10).mode == "I;16"
        with pytest.raises(ValueError, match=r"images\[0\] could not be read as an image from .*missing\.png"):
            load_image_source(f"{base_url}/missing.png", argument_name="images[0]", timeout=10)


def test_load_image_source_applies_the_exif_orientation(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (30, 10), (200, 0, 0)).save(path, exif=exif)
    assert load_image_source(str(path)).size == (10, 30)


@pytest.mark.parametrize("source", ["no-such-file.png", "a cat", ""])
def test_load_image_source_rejects_other_strings(source):
    with pytest.raises(ValueError, match="expected an http\\(s\\) URL, the path of an existing image file or base64"):
        load_image_source(source)
