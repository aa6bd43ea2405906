"""MS-CLIP image processor: the original evaluation transform (bicubic short-side resize, centre crop, ImageNet norm)."""

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from vlzoo.processing.image_processor import VlzooImageProcessor

__all__ = ["MsClipImageProcessor"]


class MsClipImageProcessor(VlzooImageProcessor):
    """Image processor reproducing the original MS-CLIP evaluation transform (msclip.md §5).

    `Resize(224)` with PIL bicubic (short side to 224, long side `int(224 * long / short)`), `CenterCrop(224)` with
    round-half-to-even offsets, `/ 255`, then ImageNet mean/std (the original's `INPUT.MEAN/STD`, not CLIP's). The
    original hard-codes 224; other sizes (e.g. 96 for small test models) run the same steps.

    Every transformers image option (`size`, `crop_size`, `resample`, `do_resize`, `do_center_crop`, `do_rescale`,
    `rescale_factor`, `do_normalize`, `image_mean`, `image_std`) works at construction and per call; inputs follow
    the shared rule of `VlzooImageProcessor` (RGB conversion with alpha dropped, as the original `ImageFolder`
    loader does; 16-bit, float and empty images raise).
    """

    size = {"shortest_edge": 224}
    crop_size = {"height": 224, "width": 224}
    resample = PILImageResampling.BICUBIC
    image_mean = tuple(IMAGENET_DEFAULT_MEAN)
    image_std = tuple(IMAGENET_DEFAULT_STD)
