"""TransVG image processor: the original test transform (long side to 640, centre zero padding, pixel mask)."""

from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling

from vlzoo.processing.letterbox import LetterboxImageProcessor

__all__ = ["TransvgImageProcessor"]


class TransvgImageProcessor(LetterboxImageProcessor):
    """TransVG's (and TransVG++'s) test transform (transvg.md §6): `ratio = 640 / max(h, w)`, sides rounded half to
    even, PIL bilinear, `/ 255`, ImageNet mean/std, centred on a zero 640 x 640 canvas (top/left offsets floor half
    the margin); `pixel_mask` is 1 on the image and 0 on the padding (the original's mask inverted).

    `transform_boxes` maps original-pixel xyxy boxes to the normalised (cx, cy, w, h) training targets and
    `post_process_grounding` maps `pred_boxes` back to original-pixel xyxy corners (clipped to the image).
    """

    size = {"longest_edge": 640}
    resample = PILImageResampling.BILINEAR
    image_mean = tuple(IMAGENET_DEFAULT_MEAN)
    image_std = tuple(IMAGENET_DEFAULT_STD)
