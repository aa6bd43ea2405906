"""`vlzoo demo beit3`: a small BEiT-3 trained on shapes VQA, reloaded through the VQA pipeline and compared with the
best question-type prior (the most frequent training answer of each question type).

Trained from scratch on VQA alone, a small BEiT-3 first learns the prior of each question type and reads colours and
shapes only much later; a first stage of image-text contrastive training on the captions (the retrieval head: the
vision class token against the caption's `<s>`) teaches the vision class token, which the VQA pooler reads, the
objects' colours and shapes, and the VQA stage starts from its folder."""

import functools
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ...registry import DemoScore
from .configuration_beit3 import Beit3Config

DEMO_IMAGE_SIZE = 64
FIGURE_EXAMPLES = 8

# Every word of the shapes questions and captions (vlzoo.data.scene_text) as one sentencepiece piece, so a text is a
# few tokens; letters, digits and punctuation cover anything else.
_WORDS = """What How Is is color shape object objects shapes are there in the image can you see large small of left right
above below on or top bottom at from first second third fourth fifth sixth seventh eighth ninth tenth many a an
and with drawn background noisy gradient single total biggest smaller middle center zero one two three four five six
seven eight nine ten white gray grey black light dark to""".split()


def _vocabulary() -> list[str]:
    from ...data.scene_text import plural
    from ...data.scenes import COLORS, SHAPES

    words = [*_WORDS, *COLORS, *SHAPES, *(plural(shape) for shape in SHAPES)]
    return list(dict.fromkeys(words))


@functools.lru_cache(maxsize=1)
def demo_sentencepiece_model() -> Path:
    """A word-level sentencepiece model of the shapes questions (written once per process); the processor saved
    next to each demo model carries a copy."""
    from .tokenization_beit3 import write_sentencepiece_model

    pieces = [("▁" + word, -2.0) for word in _vocabulary()] + [
        ("▁", -3.0),
        ("?", -3.0),
        (",", -3.0),
        (";", -3.0),
        (":", -3.0),
    ]
    pieces += [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!'-"]
    path = Path(tempfile.mkdtemp(prefix="vlzoo-beit3-demo-")) / "beit3.spm"
    write_sentencepiece_model(path, pieces)
    return path


def demo_config() -> Beit3Config:
    """A small BEiT-3 (the released layout: multiway experts, sub-LN, positions from 2) at 64 px with 16 px patches:
    width 128, 4 layers, 4 heads, FFN 512, no final LayerNorm (as the released VQA heads); the vocabulary is the demo
    tokenizer's."""
    from .tokenization_beit3 import Beit3Tokenizer

    tokenizer = Beit3Tokenizer(demo_sentencepiece_model())
    return Beit3Config(
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        vocab_size=tokenizer.vocab_size,
        mask_token_id=tokenizer.mask_token_id,
        max_position_embeddings=34,
        image_size=DEMO_IMAGE_SIZE,
        patch_size=16,
        final_layer_norm=False,
        classifier_hidden_size=256,
    )


def demo_processor() -> Any:
    """The vision-language transform at 64 px and the demo tokenizer (questions are at most 32 tokens)."""
    from .image_processing_beit3 import Beit3ImageProcessor
    from .processing_beit3 import Beit3Processor
    from .tokenization_beit3 import Beit3Tokenizer

    tokenizer = Beit3Tokenizer(demo_sentencepiece_model(), model_max_length=32)
    return Beit3Processor(Beit3ImageProcessor.for_vision_language(DEMO_IMAGE_SIZE), tokenizer)


def _type_name(question_type: str) -> str:
    return re.sub(r"\W+", "_", question_type).strip("_")


def demo_score(model_dir: Path, test: Any) -> DemoScore:
    """VQA accuracy on the test questions of the model saved in `model_dir`, loaded by the VQA pipeline as a user
    would; details: the accuracy per question type and the first answers (for the figure)."""
    from transformers import pipeline

    from ...data import task_dataset
    from ...evaluation.vqa import normalize_vqa_answer, vqa_answer_scores

    rows = task_dataset(test, "vqa")
    if (Path(model_dir) / "vqa").is_dir():  # staged training: the last stage's folder
        model_dir = Path(model_dir) / "vqa"
    answerer = pipeline("vlzoo-visual-question-answering", model=str(model_dir))
    results = answerer(list(rows["image"]), list(rows["question"]), top_k=1, batch_size=64)
    predictions = [result[0]["answer"] for result in results]
    hits = [
        vqa_answer_scores(answers).get(normalize_vqa_answer(prediction), 0.0)
        for prediction, answers in zip(predictions, rows["answers"], strict=True)
    ]
    by_type: dict[str, list[float]] = {}
    for question_type, hit in zip(rows["question_type"], hits, strict=True):
        by_type.setdefault(_type_name(question_type), []).append(hit)
    details = {"vqa": sum(hits) / len(hits), **{t: sum(v) / len(v) for t, v in sorted(by_type.items())}}
    details["predictions"] = predictions[:FIGURE_EXAMPLES]
    return DemoScore(details["vqa"], details)


def question_type_prior(test: Any, train: Any) -> dict[str, float]:
    """`prior`: the VQA accuracy of answering each test question with the most frequent training answer of its
    question type (the best answer that ignores the image and the question's words), and that prior per type."""
    from ...data import task_dataset
    from ...evaluation.vqa import normalize_vqa_answer, vqa_answer_scores

    train_rows, test_rows = task_dataset(train, "vqa"), task_dataset(test, "vqa")
    counts: dict[str, Counter] = {}
    for question_type, answers in zip(train_rows["question_type"], train_rows["answers"], strict=True):
        counts.setdefault(question_type, Counter()).update(normalize_vqa_answer(a) for a in answers)
    best = {question_type: counter.most_common(1)[0][0] for question_type, counter in counts.items()}
    hits: dict[str, list[float]] = {}
    for question_type, answers in zip(test_rows["question_type"], test_rows["answers"], strict=True):
        hit = vqa_answer_scores(answers).get(best.get(question_type, ""), 0.0)
        hits.setdefault(question_type, []).append(hit)
    every = [hit for values in hits.values() for hit in values]
    per_type = {f"prior_{_type_name(t)}": sum(v) / len(v) for t, v in sorted(hits.items())}
    return {"prior": sum(every) / len(every), **per_type}


def demo_figure(path: Path, test: Any, scores: Mapping[str, DemoScore]) -> None:
    """The first test questions with their images, the model's answer (green when right) and the true answer."""
    from ...data import task_dataset

    rows = task_dataset(test, "vqa")
    name, score = next(iter(scores.items()))
    predictions = score.details["predictions"]
    shown, thumb, text_width = min(FIGURE_EXAMPLES, len(predictions)), 96, 420
    font = ImageFont.load_default()
    canvas = Image.new("RGB", (thumb + text_width, 24 + shown * (thumb + 6)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{name}: vqa accuracy {score.value:.3f} on {len(rows)} test questions", fill="black", font=font)
    for index in range(shown):
        row = rows[index]
        top = 24 + index * (thumb + 6)
        canvas.paste(row["image"].convert("RGB").resize((thumb, thumb), Image.NEAREST), (0, top))
        truth = row["answers"][0]
        right = predictions[index] == truth
        draw.text((thumb + 8, top + 8), row["question"], fill="black", font=font)
        draw.text(
            (thumb + 8, top + 30), f"predicted: {predictions[index]}", fill="green" if right else "red", font=font
        )
        draw.text((thumb + 8, top + 48), f"true: {truth}  ({row['question_type']})", fill="black", font=font)
    canvas.save(path)


__all__ = [
    "DEMO_IMAGE_SIZE",
    "demo_config",
    "demo_figure",
    "demo_processor",
    "demo_score",
    "demo_sentencepiece_model",
    "question_type_prior",
]
