"""The letterbox image processor reproduces TransVG's test transform and maps boxes to and from its canvas."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vlzoo.processing import LetterboxImageProcessor, letterbox_geometry, pad_to_canvas

PREPROCESS_CASE = "transvg/transvg-preprocess"


@pytest.fixture
def preprocess_case(fixtures_dir, fixture_io):
    """The original transform's outputs and the 4 odd-sized images they were computed from."""
    folder = fixtures_dir / PREPROCESS_CASE
    inputs = json.loads((folder / "inputs.json").read_text())
    images = [Image.open(folder / entry["file"]) for entry in inputs["images"]]
    return fixture_io(PREPROCESS_CASE), images


@pytest.mark.parametrize("canvas", [64, 640])
def test_matches_the_original_transform(preprocess_case, canvas):
    io, images = preprocess_case
    processor = LetterboxImageProcessor(size=canvas)
    out = processor(images=images, return_tensors="pt")
    assert set(out) == {"pixel_values", "pixel_mask"}
    assert out["pixel_mask"].dtype == torch.int64
    if canvas == 64:
        torch.testing.assert_close(out["pixel_values"], io["output.pixel_values_64"], atol=1e-5, rtol=0)
        assert torch.equal(out["pixel_mask"], 1 - io["output.img_mask_64"])
    else:
        sampled = out["pixel_values"][:, :, 3::8, 5::8]
        torch.testing.assert_close(sampled, io["output.pixel_values_640_sub"], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            out["pixel_values"].sum(-1), io["output.pixel_values_640_rowsum"], atol=1e-3, rtol=0
        )
        assert torch.equal(out["pixel_mask"][:, 3::8, 5::8], 1 - io["output.img_mask_640_sub"])
    sizes = [(image.height, image.width) for image in images]
    geometry = [processor.letterbox_geometry(height, width) for height, width in sizes]
    found = torch.tensor([[g.resized_width, g.resized_height, g.left, g.top] for g in geometry])
    assert torch.equal(found, io[f"output.geometry_{canvas}"])
    targets = processor.transform_boxes(io["input.boxes_xyxy"], sizes)
    torch.testing.assert_close(targets, io[f"output.boxes_{canvas}"], atol=1e-6, rtol=0)
    # The inverse brings the original's transformed boxes back to the input pixels.
    back = processor.post_process_grounding(io[f"output.boxes_{canvas}"], sizes)
    torch.testing.assert_close(back, io["input.boxes_xyxy"], atol=1e-4, rtol=0)


def test_geometry_rounds_half_to_even_and_puts_the_odd_margin_last():
    # 45 * 64 / 128 = 22.5 -> 22 (half to even), margin 42 -> 21 above and below.
    assert letterbox_geometry(45, 128, 64) == (0.5, 22, 64, 21, 0)
    # 77 * 640 / 256 = 192.5 -> 192 (half to even), margin 448 -> 224 above.
    assert letterbox_geometry(77, 256, 640)[1:] == (192, 640, 224, 0)
    assert letterbox_geometry(27, 3, 64)[1:] == (64, 7, 0, 28)  # margin 57: 28 left, 29 right
    assert letterbox_geometry(1, 500, 64).resized_height == 1  # never an empty image
    with pytest.raises(ValueError, match="size must be a positive int"):
        letterbox_geometry(10, 10, 0)
    with pytest.raises(ValueError, match="empty image"):
        letterbox_geometry(0, 10, 64)


def test_pad_to_canvas_places_pixels_and_mask():
    pixels = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3) + 1
    canvas, mask = pad_to_canvas(pixels, 5, top=1, left=2)
    assert canvas.shape == (2, 5, 5) and mask.dtype == np.int64
    assert np.array_equal(canvas[:, 1:3, 2:5], pixels)
    assert canvas.sum() == pixels.sum() and mask.sum() == 6 and mask[1:3, 2:5].all()
    with pytest.raises(ValueError, match="does not fit"):
        pad_to_canvas(pixels, 5, top=4, left=0)


def test_box_mappings_are_inverse_and_clip_to_the_image():
    processor = LetterboxImageProcessor(size=32)
    sizes = [(30, 50), (47, 13), (20, 20)]
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(3, 2, 2, generator=generator).sort(dim=1).values
    boxes = torch.stack(
        [corners[:, 0, 0] * 50, corners[:, 0, 1] * 30, corners[:, 1, 0] * 50, corners[:, 1, 1] * 30], dim=1
    )
    boxes = torch.minimum(boxes, torch.tensor([[w, h, w, h] for h, w in sizes], dtype=torch.float32))
    targets = processor.transform_boxes(boxes, sizes)
    torch.testing.assert_close(processor.post_process_grounding(targets, sizes), boxes, atol=1e-4, rtol=0)
    # Hand computation for a 30 x 50 image on 32 px: scale 0.64, resized 19 x 32, top (32 - 19) // 2 = 6.
    # The canvas box (cx, cy, w, h) = (0.5, 0.5, 0.25, 0.25) is (12, 12)-(20, 20) on the canvas, so
    # ((12 - 0) / 0.64, (12 - 6) / 0.64, 20 / 0.64, (20 - 6) / 0.64) in the image.
    box = processor.post_process_grounding(torch.tensor([[0.5, 0.5, 0.25, 0.25]]), [(30, 50)])
    torch.testing.assert_close(box, torch.tensor([[18.75, 9.375, 31.25, 21.875]]))
    # A box over the whole canvas reaches into the padding: clipped to the image unless clip=False.
    whole = torch.tensor([[0.5, 0.5, 1.0, 1.0]])
    torch.testing.assert_close(processor.post_process_grounding(whole, [(30, 50)]), torch.tensor([[0.0, 0.0, 50, 30]]))
    unclipped = processor.post_process_grounding(whole, [(30, 50)], clip=False)
    torch.testing.assert_close(unclipped, torch.tensor([[0.0, -6 / 0.64, 50, 26 / 0.64]]))
    # Sizes may come as a [N, 2] tensor (height, width).
    torch.testing.assert_close(
        processor.post_process_grounding(targets, torch.tensor(sizes)), boxes, atol=1e-4, rtol=0
    )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda p: p.post_process_grounding(torch.zeros(2, 4), [(10, 10)]), r"one \(height, width\) per box \(2\)"),
        (lambda p: p.post_process_grounding(torch.zeros(1, 4), [(10, 0)]), r"original_sizes\[0\] must be"),
        (lambda p: p.post_process_grounding(torch.zeros(1, 3), [(10, 10)]), r"pred_boxes must have shape \[N, 4\]"),
        (lambda p: p.transform_boxes(torch.zeros(1, 4), [(10.5, 10)]), r"image_sizes\[0\] must be"),
    ],
)
def test_box_mapping_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(LetterboxImageProcessor(size=32))


def test_options_and_saving(tmp_path):
    processor = LetterboxImageProcessor(size=24, image_mean=0.5, image_std=0.5)
    assert processor.canvas_size == 24 and dict(processor.size) == {"longest_edge": 24}
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (10, 30, 3), dtype=np.uint8))
    out = processor(images=image, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 24, 24)
    assert out["pixel_mask"][0].sum() == 8 * 24  # 10 x 30 -> 8 x 24
    # Padding is zero after normalisation; the image pixels are (x / 255 - 0.5) / 0.5.
    assert out["pixel_values"][0, :, :8].abs().sum() == 0
    assert out["pixel_values"][0, :, 8:16].min() >= -1 and out["pixel_values"][0, :, 8:16].max() <= 1
    per_call = processor(images=image, size=12, return_tensors="pt")
    assert per_call["pixel_values"].shape == (1, 3, 12, 12)

    processor.save_pretrained(tmp_path)
    reloaded = LetterboxImageProcessor.from_pretrained(tmp_path)
    assert torch.equal(reloaded(images=image, return_tensors="pt")["pixel_values"], out["pixel_values"])


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"do_pad": False}, "a letterbox always pads"),
        ({"do_center_crop": True}, "pads instead of cropping"),
        ({"do_resize": False}, "always resizes the long side"),
        ({"size": {"shortest_edge": 32}}, r"size must have the keys \['longest_edge'\]"),
    ],
)
def test_options_that_do_not_apply_raise(options, match):
    with pytest.raises(ValueError, match=match):
        LetterboxImageProcessor(**options)
    with pytest.raises(ValueError, match=match):
        LetterboxImageProcessor(size=16)(images=Image.new("RGB", (8, 8)), **options)


def test_the_image_rule_applies():
    sixteen_bit = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    with pytest.raises(ValueError, match=r"images\[1\] has PIL mode 'I;16'"):
        LetterboxImageProcessor(size=16)(images=[Image.new("RGB", (8, 8)), sixteen_bit])
