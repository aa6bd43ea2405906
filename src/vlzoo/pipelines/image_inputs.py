"""One image rule for every pipeline: vlzoo image processors load and check the raw input before anything converts it.

transformers' image pipelines call `load_image`, which converts every image to RGB first, so a 16-bit or float
image reaches the image processor already clipped to 0..255 and passes. The subclasses below run the image
processor's own loading and checks (`VlzooImageProcessor.load_rgb_image`) on the raw input instead; with any other
image processor they behave exactly like transformers' classes. `register_pipelines` installs them for their tasks.
"""

from typing import Any

from PIL import Image
from transformers.image_utils import load_image
from transformers.pipelines.image_feature_extraction import ImageFeatureExtractionPipeline
from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline

__all__ = [
    "CheckedImageFeatureExtractionPipeline",
    "CheckedZeroShotImageClassificationPipeline",
    "load_pipeline_image",
]


def _is_vlzoo_image_processor(image_processor: Any) -> bool:
    """Whether `image_processor` is a `vlzoo.processing.VlzooImageProcessor`, by class name.

    Without an import of vlzoo, so that this module can be bundled with remote code: there the image processor comes
    from the folder's own modules, a different class object than any this module could import.
    """
    return any(cls.__name__ == "VlzooImageProcessor" for cls in type(image_processor).__mro__)


def load_pipeline_image(
    image: Any,
    image_processor: Any,
    argument_name: str = "images",
    timeout: float | None = None,
    input_data_format: str | None = None,
) -> Image.Image:
    """Load one pipeline input as an RGB PIL image.

    With a `VlzooImageProcessor` the input (PIL image, array, tensor, path, URL or base64 string) goes through the
    processor's rule and bad images raise a `ValueError` naming `argument_name`; otherwise transformers' `load_image`.
    """
    if _is_vlzoo_image_processor(image_processor):
        return image_processor.load_rgb_image(
            image, argument_name=argument_name, timeout=timeout, input_data_format=input_data_format
        )
    return load_image(image, timeout=timeout)


class CheckedZeroShotImageClassificationPipeline(ZeroShotImageClassificationPipeline):
    """transformers' zero-shot-image-classification pipeline with the image processor's input checks."""

    def preprocess(self, image: Any, *args: Any, timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        image = load_pipeline_image(image, self.image_processor, argument_name="image", timeout=timeout)
        return super().preprocess(image, *args, timeout=timeout, **kwargs)


class CheckedImageFeatureExtractionPipeline(ImageFeatureExtractionPipeline):
    """transformers' image-feature-extraction pipeline with the image processor's input checks."""

    def preprocess(self, image: Any, timeout: float | None = None, **image_processor_kwargs: Any) -> dict[str, Any]:
        image = load_pipeline_image(
            image,
            self.image_processor,
            argument_name="images",
            timeout=timeout,
            input_data_format=image_processor_kwargs.get("input_data_format"),
        )
        return super().preprocess(image, timeout=timeout, **image_processor_kwargs)

    def postprocess(self, model_outputs: Any, pool: bool | None = None, return_tensors: bool = False) -> Any:
        """`pool=True` gives the model's pooled image feature: `pooler_output`, or for dual encoders whose image-only
        output has none at the top level (FLAVA, BEiT-3 retrieval) their projected `image_embeds`."""
        if pool and "pooler_output" not in model_outputs and model_outputs.get("image_embeds") is not None:
            outputs = model_outputs["image_embeds"]
            return outputs if return_tensors else outputs.tolist()
        return super().postprocess(model_outputs, pool=pool, return_tensors=return_tensors)
