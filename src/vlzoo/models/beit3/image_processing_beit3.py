"""BEiT-3 image processor: the original evaluation transforms (beit3.md §5)."""

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from vlzoo.processing.image_processor import VlzooImageProcessor

__all__ = ["Beit3ImageProcessor"]


class Beit3ImageProcessor(VlzooImageProcessor):
    """The original BEiT-3 evaluation transform, vision-language setting by default.

    Vision-language tasks (VQA, NLVR2, retrieval, captioning): `Resize((S, S))` with PIL bicubic (the aspect ratio
    is NOT kept), `/ 255`, mean = std = 0.5. `for_imagenet(S, crop_pct)` gives the ImageNet transform instead:
    short side to `int(S / crop_pct)` (torchvision's rule for the long side), `CenterCrop(S)`, ImageNet mean/std;
    like the original, sizes of 32 px and below are neither resized nor cropped. Images are converted to RGB with
    alpha dropped, as torchvision's `default_loader` does. Every transformers image option works at construction and
    per call (see `VlzooImageProcessor`).
    """

    size = {"height": 224, "width": 224}
    do_center_crop = False
    crop_size = {"height": 224, "width": 224}
    resample = PILImageResampling.BICUBIC
    image_mean = (0.5, 0.5, 0.5)
    image_std = (0.5, 0.5, 0.5)

    @classmethod
    def for_vision_language(cls, image_size: int) -> "Beit3ImageProcessor":
        """Square bicubic resize to `image_size`, mean/std 0.5 (480 VQA/captioning, 384 retrieval, 224 NLVR2)."""
        return cls(size={"height": image_size, "width": image_size})

    @classmethod
    def for_imagenet(cls, image_size: int, crop_pct: float = 1.0) -> "Beit3ImageProcessor":
        """The ImageNet evaluation transform (`crop_pct` 1.0 in every released evaluation)."""
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1]; got {crop_pct}")
        resize = image_size > 32  # the original's `resize_im`
        return cls(
            do_resize=resize,
            size={"shortest_edge": int(image_size / crop_pct)},
            do_center_crop=resize,
            crop_size={"height": image_size, "width": image_size},
            image_mean=tuple(IMAGENET_DEFAULT_MEAN),
            image_std=tuple(IMAGENET_DEFAULT_STD),
        )
