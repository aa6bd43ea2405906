"""The shared image processor: every transformers option at construction and per call, one input rule, clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.image_utils import PILImageResampling

from tests.processing.image_server import serve_directory, write_images
from vlzoo.processing.image_processor import VlzooImageProcessor
from vlzoo.processing.image_transforms import center_crop, resize_short_side, resize_to, to_pixel_array


class ExactResizeProcessor(VlzooImageProcessor):
    """A family configured only by class attributes: exact 20x30 bilinear resize, no crop, [-1, 1] scaling."""

    size = {"height": 20, "width": 30}
    resample = PILImageResampling.BILINEAR
    do_center_crop = False
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)


class ShortSideProcessor(VlzooImageProcessor):
    size = {"shortest_edge": 24}
    crop_size = {"height": 16, "width": 16}


def _image(width: int = 37, height: int = 29, seed: int = 0) -> Image.Image:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(array, mode="RGB")


def _reference(image: Image.Image, options: dict) -> np.ndarray:
    """The transform spelled out with the torchvision-exact helpers, for a ShortSideProcessor with `options`."""
    settings = {
        "do_resize": True,
        "size": {"shortest_edge": 24},
        "default_to_square": False,
        "resample": PILImageResampling.BICUBIC,
        "do_center_crop": True,
        "crop_size": (16, 16),
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": (0.485, 0.456, 0.406),
        "image_std": (0.229, 0.224, 0.225),
        **options,
    }
    size = settings["size"]
    if isinstance(size, int):
        size = {"height": size, "width": size} if settings["default_to_square"] else {"shortest_edge": size}
    if settings["do_resize"] and "shortest_edge" in size:
        image = resize_short_side(image, size["shortest_edge"], settings["resample"])
    elif settings["do_resize"]:
        image = resize_to(image, (size["height"], size["width"]), settings["resample"])
    crop = settings["crop_size"]
    if settings["do_center_crop"]:
        image = center_crop(image, (crop, crop) if isinstance(crop, int) else tuple(crop))
    normalize = settings["do_normalize"]
    return to_pixel_array(
        image,
        settings["rescale_factor"] if settings["do_rescale"] else None,
        settings["image_mean"] if normalize else None,
        settings["image_std"] if normalize else None,
    )[None]


OPTIONS = {
    "do_resize": {"do_resize": False},
    "size shortest_edge": {"size": {"shortest_edge": 20}},
    "size int": {"size": 18},
    "size height width": {"size": {"height": 17, "width": 40}},
    "default_to_square": {"size": 20, "default_to_square": True},
    "resample": {"resample": PILImageResampling.NEAREST},
    "do_center_crop": {"do_center_crop": False},
    "crop_size": {"crop_size": (10, 12)},
    "do_rescale": {"do_rescale": False},
    "rescale_factor": {"rescale_factor": 1 / 127.5},
    "do_normalize": {"do_normalize": False},
    "image_mean and image_std": {"image_mean": [0.1, 0.2, 0.3], "image_std": [0.3, 0.2, 0.1]},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_each_option_is_honoured_at_construction_and_per_call(name):
    options, image = OPTIONS[name], _image()
    expected = _reference(image, options)
    default = ShortSideProcessor()(image)["pixel_values"]
    assert expected.shape != default.shape or np.abs(expected - default).max() > 1e-3, "the option must change pixels"
    np.testing.assert_allclose(ShortSideProcessor(**options)(image)["pixel_values"], expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ShortSideProcessor()(image, **options)["pixel_values"], expected, rtol=0, atol=1e-6)
    # A per-call value applies to that call only.
    np.testing.assert_array_equal(ShortSideProcessor()(image)["pixel_values"], default)


def test_a_family_is_configured_by_class_attributes_alone():
    image = _image(50, 25)
    expected = to_pixel_array(resize_to(image, (20, 30), PILImageResampling.BILINEAR), 1 / 255, [0.5] * 3, [0.5] * 3)
    pixel_values = ExactResizeProcessor()(image, return_tensors="pt")["pixel_values"]
    assert isinstance(pixel_values, torch.Tensor) and pixel_values.shape == (1, 3, 20, 30)
    np.testing.assert_array_equal(pixel_values[0].numpy(), expected)
    assert ExactResizeProcessor().to_dict()["size"] == {"height": 20, "width": 30}


def test_options_survive_save_and_reload(tmp_path):
    processor = ShortSideProcessor(do_normalize=False, crop_size=(10, 12), resample=PILImageResampling.NEAREST)
    processor.save_pretrained(tmp_path)
    reloaded = ShortSideProcessor.from_pretrained(tmp_path)
    assert reloaded.to_dict() == processor.to_dict()
    assert reloaded.do_normalize is False and reloaded.crop_size == {"height": 10, "width": 12}
    image = _image()
    np.testing.assert_array_equal(reloaded(image)["pixel_values"], processor(image)["pixel_values"])


def test_batches_lists_and_4d_arrays():
    images = [_image(seed=seed) for seed in range(3)]
    processor = ShortSideProcessor()
    stacked = processor(images)["pixel_values"]
    assert stacked.shape == (3, 3, 16, 16)
    batch = np.stack([np.asarray(image) for image in images])
    np.testing.assert_array_equal(processor(batch)["pixel_values"], stacked)
    np.testing.assert_array_equal(processor(torch.from_numpy(batch).permute(0, 3, 1, 2))["pixel_values"], stacked)
    with pytest.raises(TypeError, match=r"images\[1\] is a list"):
        processor([images[0], [images[1]]])


def test_paths_and_urls_are_loaded_and_checked(tmp_path):
    files = write_images(tmp_path)
    processor = ShortSideProcessor()
    expected = processor(Image.open(files["rgb"]))["pixel_values"]
    np.testing.assert_array_equal(processor(str(files["rgb"]))["pixel_values"], expected)
    with serve_directory(tmp_path) as base_url:
        np.testing.assert_array_equal(processor([f"{base_url}/rgb.png"])["pixel_values"], expected)
        with pytest.raises(ValueError, match=r"images\[1\] has PIL mode 'I;16'"):
            processor([f"{base_url}/rgb.png", f"{base_url}/gray16.png"])
    with pytest.raises(ValueError, match=r"images has PIL mode 'I;16'"):
        processor(str(files["gray16"]))
    assert processor.fetch_images([str(files["gray16"])])[0].mode == "I;16"


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (Image.new("I;16", (8, 8)), r"images\[1\] has PIL mode 'I;16'"),
        (Image.new("I", (8, 8)), r"images\[1\] has PIL mode 'I'"),
        (Image.new("F", (8, 8)), r"images\[1\] has PIL mode 'F'"),
        (Image.new("RGB", (0, 8)), r"images\[1\] is an empty image"),
        (np.zeros((8, 8), dtype=np.uint16), r"images\[1\] is a numpy array of dtype uint16"),
        (np.full((8, 8, 3), 2.0), r"images\[1\] is a float numpy array with values outside \[0, 1\]"),
        (torch.full((3, 8, 8), -1.0), r"images\[1\] is a float tensor with values outside \[0, 1\]"),
    ],
    ids=["I;16", "I", "F", "empty", "uint16", "float>1", "tensor<0"],
)
def test_hostile_images_raise_naming_the_item(image, match):
    with pytest.raises(ValueError, match=match):
        ShortSideProcessor()([_image(), image])


def test_unknown_and_unsupported_options_raise():
    image = _image()
    with pytest.raises(TypeError, match=r"unexpected arguments \['do_normalise'\]; it accepts do_resize, size"):
        ShortSideProcessor(do_normalise=False)
    with pytest.raises(TypeError, match=r"unexpected arguments \['max_length'\]"):
        ShortSideProcessor()(image, max_length=3)
    for option, value in [("do_pad", True), ("device", "cpu"), ("data_format", "channels_last")]:
        with pytest.raises(ValueError, match=f"{option}={value!r} is not supported"):
            ShortSideProcessor()(image, **{option: value})
        with pytest.raises(ValueError, match=f"{option}={value!r} is not supported"):
            ShortSideProcessor(**{option: value})
    with pytest.raises(ValueError, match="do_convert_rgb=False is not supported"):
        ShortSideProcessor(do_convert_rgb=False)
    # The values that mean what this processor does anyway are accepted.
    same = ShortSideProcessor()(image, do_pad=False, data_format="channels_first", do_convert_rgb=True)
    np.testing.assert_array_equal(same["pixel_values"], ShortSideProcessor()(image)["pixel_values"])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"size": {"longest_edge": 30}}, r"size must have the keys \['shortest_edge'\] or \['height', 'width'\]"),
        ({"size": 0}, r"size\['shortest_edge'\] must be a positive int"),
        ({"crop_size": 0}, r"crop_size\['height'\] must be a positive int"),
        ({"image_mean": [0.5, 0.5]}, "image_mean must be one float or 3 floats"),
        ({"image_std": [0.2, 0.0, 0.2]}, "image_std must be positive"),
        ({"resample": 99}, "resample must be a PIL resampling filter"),
        ({"rescale_factor": -1.0}, "rescale_factor must be a positive float"),
    ],
)
def test_bad_option_values_raise_at_construction_and_per_call(options, match):
    with pytest.raises(ValueError, match=match):
        ShortSideProcessor(**options)
    with pytest.raises(ValueError, match=match):
        ShortSideProcessor()(_image(), **options)


def test_batch_that_cannot_be_stacked_raises():
    with pytest.raises(ValueError, match=r"different sizes \[\(24, 30\), \(24, 48\)\]"):
        ShortSideProcessor(do_center_crop=False)([_image(30, 24), _image(48, 24)])
    with pytest.raises(ValueError, match="non-empty list"):
        ShortSideProcessor()([])
