"""transformers' pipelines and vlzoo's retrieval pipeline on a saved MS-CLIP folder."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import pipeline

import vlzoo  # noqa: F401  (registers the family and the pipelines)
from tests.processing.image_server import serve_directory, write_images
from vlzoo.models.ms_clip import MsClipModel
from vlzoo.pipelines import CheckedImageFeatureExtractionPipeline, CheckedZeroShotImageClassificationPipeline

from .tester import tiny_config, tiny_processor


def _config():
    # the tiny processor's tokenizer: CLIP BPE with 486 merges (vocabulary 1000, SOT 998, EOT 999)
    text = {"vocab_size": 1000, "bos_token_id": 998, "eos_token_id": 999, "max_position_embeddings": 77}
    base = tiny_config().to_dict()["text_config"]
    return tiny_config(
        text_config={
            **{k: base[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")},
            **text,
        }
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ms_clip")
    MsClipModel(_config()).save_pretrained(path)
    tiny_processor().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def images():
    return [
        Image.new("RGB", (40, 32), (220, 20, 20)),
        Image.new("RGBA", (32, 50), (20, 20, 220, 128)),
        Image.new("L", (33, 33), 200),
    ]


def _manual(folder, images, texts):
    model = MsClipModel.from_pretrained(folder).eval()
    processor = tiny_processor()
    inputs = processor(text=texts, images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model(**inputs)


def test_zero_shot_image_classification(folder, images):
    labels = ["red square", "blue square", "gray square"]
    classifier = pipeline("zero-shot-image-classification", model=str(folder))
    result = classifier(images[0], candidate_labels=labels, hypothesis_template="a {}")
    assert sorted(r["label"] for r in result) == sorted(labels)
    scores = {r["label"]: r["score"] for r in result}
    expected = _manual(folder, images[:1], [f"a {label}" for label in labels]).logits_per_image.softmax(-1)[0]
    torch.testing.assert_close(torch.tensor([scores[label] for label in labels]), expected, rtol=1e-4, atol=1e-5)


def test_image_feature_extraction(folder, images):
    extractor = pipeline("image-feature-extraction", model=str(folder))
    pooled = extractor(images[1], pool=True, return_tensors=True)
    expected = _manual(folder, images[1:2], ["x"]).vision_model_output.pooler_output
    torch.testing.assert_close(pooled.reshape(expected.shape), expected, rtol=1e-4, atol=1e-5)
    tokens = extractor(images[1], return_tensors=True)
    assert tokens.shape[-2:] == (
        tiny_config().vision_config.grid_size ** 2 + 1,
        tiny_config().vision_config.hidden_size,
    )


def test_image_text_retrieval_both_directions(folder, images):
    retrieval = pipeline("image-text-retrieval", model=str(folder))
    texts = ["a red thing", "a blue thing", "a gray thing", "nothing at all"]
    out = _manual(folder, images, texts)
    cosine = out.image_embeds @ out.text_embeds.t()

    ranked_images = retrieval(images=images, texts=texts[1])
    assert ranked_images["indices"] == cosine[:, 1].argsort(descending=True).tolist()
    torch.testing.assert_close(
        torch.tensor(ranked_images["scores"]), cosine[:, 1].sort(descending=True).values, atol=1e-5, rtol=1e-4
    )

    ranked_texts = retrieval(images=images[2], texts=texts, top_k=2)
    assert ranked_texts["indices"] == cosine[2].argsort(descending=True)[:2].tolist()


def test_bad_images_raise_clear_errors(folder):
    classifier = pipeline("zero-shot-image-classification", model=str(folder))
    with pytest.raises(ValueError, match="size"):
        classifier(Image.new("RGB", (0, 10)), candidate_labels=["a", "b"])


# ---- one image rule for every pipeline ----


@pytest.fixture(scope="module")
def pipelines(folder):
    return {
        "zero-shot": pipeline("zero-shot-image-classification", model=str(folder)),
        "features": pipeline("image-feature-extraction", model=str(folder)),
        "retrieval": pipeline("image-text-retrieval", model=str(folder)),
    }


def _run(pipelines, kind, image):
    """Call one pipeline with `image` as its (only or second) image."""
    if kind == "zero-shot":
        return pipelines[kind](image, candidate_labels=["red", "blue"])
    if kind == "features":
        return pipelines[kind](image, return_tensors=True)
    return pipelines[kind](images=[Image.new("RGB", (40, 32), (1, 2, 3)), image], texts="a query")


ARGUMENT_NAMES = {"zero-shot": "image", "features": "images", "retrieval": r"images\[1\]"}
HOSTILE_IMAGES = {
    "I;16": (lambda: Image.new("I;16", (40, 32)), "has PIL mode 'I;16'"),
    "I": (lambda: Image.new("I", (40, 32)), "has PIL mode 'I'"),
    "F": (lambda: Image.new("F", (40, 32)), "has PIL mode 'F'"),
    "empty": (lambda: Image.new("RGB", (0, 32)), "is an empty image of size 0x32"),
    "uint16 array": (lambda: np.zeros((32, 40, 3), dtype=np.uint16), "is a numpy array of dtype uint16"),
    "float array > 1": (lambda: np.full((32, 40, 3), 3.0), r"is a float numpy array with values outside \[0, 1\]"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE_IMAGES))
@pytest.mark.parametrize("kind", list(ARGUMENT_NAMES))
def test_every_pipeline_refuses_hostile_images_like_the_processor(pipelines, kind, hostile):
    make, message = HOSTILE_IMAGES[hostile]
    with pytest.raises(ValueError, match=rf"^{ARGUMENT_NAMES[kind]} {message}"):
        _run(pipelines, kind, make())
    # The processor gives the same verdict on the same input.
    with pytest.raises(ValueError, match=message):
        tiny_processor()(images=make())


@pytest.mark.parametrize("kind", list(ARGUMENT_NAMES))
def test_every_pipeline_reads_paths_and_urls_and_refuses_16_bit_files(pipelines, kind, tmp_path):
    files = write_images(tmp_path)
    expected = _run(pipelines, kind, Image.open(files["rgb"]))
    with serve_directory(tmp_path) as base_url:
        for source in (str(files["rgb"]), f"{base_url}/rgb.png"):
            result = _run(pipelines, kind, source)
            if kind == "features":
                torch.testing.assert_close(result, expected)
            else:
                assert result == expected
        for source in (str(files["gray16"]), f"{base_url}/gray16.png"):
            with pytest.raises(ValueError, match=rf"^{ARGUMENT_NAMES[kind]} has PIL mode 'I;16'"):
                _run(pipelines, kind, source)


def test_pipelines_accept_arrays_like_the_processor(pipelines, images):
    array = np.asarray(images[0])
    features = pipelines["features"](array, return_tensors=True)
    torch.testing.assert_close(features, pipelines["features"](images[0], return_tensors=True))
    scaled = pipelines["zero-shot"](array / 255.0, candidate_labels=["red", "blue"])
    assert scaled == pipelines["zero-shot"](images[0], candidate_labels=["red", "blue"])


def test_transformers_tasks_use_the_checking_subclasses(pipelines):
    assert isinstance(pipelines["zero-shot"], CheckedZeroShotImageClassificationPipeline)
    assert isinstance(pipelines["features"], CheckedImageFeatureExtractionPipeline)


def test_feature_extraction_passes_the_layout_hint_to_the_image_rule(pipelines):
    # (3, 40, 4) could be 3 channels first or 4 channels last; numpy arrays default to channels-last.
    array = np.random.default_rng(0).integers(0, 256, (3, 40, 4), dtype=np.uint8)
    extract = pipelines["features"]
    as_last = Image.fromarray(array[..., :3], mode="RGB")
    as_first = Image.fromarray(np.ascontiguousarray(np.moveaxis(array, 0, -1)), mode="RGB")
    torch.testing.assert_close(extract(array, return_tensors=True), extract(as_last, return_tensors=True))
    hinted = extract(array, return_tensors=True, image_processor_kwargs={"input_data_format": "channels_first"})
    torch.testing.assert_close(hinted, extract(as_first, return_tensors=True))
