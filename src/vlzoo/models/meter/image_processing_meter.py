"""METER image processor: the original `clip_transform` (bicubic short-side resize, centre crop, CLIP mean/std)."""

from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling

from vlzoo.processing.image_processor import VlzooImageProcessor

__all__ = ["MeterImageProcessor"]


class MeterImageProcessor(VlzooImageProcessor):
    """Image processor reproducing METER's `clip_transform(size)` exactly (meter.md §5).

    `Resize(size)` with PIL bicubic (short side to `size`, long side `int(size * long / short)`), `CenterCrop(size)`
    with torchvision's round-half-to-even offsets (transformers' CLIP processor floors them and is one pixel off
    whenever the overhang is 3 mod 4), `/ 255`, CLIP mean/std. The resolution is the checkpoint's (288 pretraining,
    576 VQA, 384 SNLI-VE and retrieval); `MeterProcessor.from_model_config` sets it from the model. The original
    opens images as RGBA and drops alpha when converting to RGB, which is the shared input rule here.
    """

    size = {"shortest_edge": 288}
    crop_size = {"height": 288, "width": 288}
    resample = PILImageResampling.BICUBIC
    image_mean = tuple(OPENAI_CLIP_MEAN)
    image_std = tuple(OPENAI_CLIP_STD)
