"""`vlzoo demo meter`: a small METER trained on shapes for VQA, then fine-tuned from that folder for image-text
matching, both saved and scored from their folders through the VQA and `image-text-matching` pipelines against the
question-type prior and chance.

VQA comes first because its dense, question-specific signal teaches the co-attention to read the image; a METER
trained from scratch on ITM alone stays at the class prior for hundreds of steps (every pair scored alike) before the
cross-attention starts to match words to image regions."""

import functools
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from ...registry import DemoScore

DEMO_IMAGE_SIZE = 32
DEMO_PATCH_SIZE = 8
DEMO_TEXT_LENGTH = 40
DEMO_WIDTH = 64
FIGURE_EXAMPLES = 6
PIPELINE_BATCH = 64


@functools.cache
def demo_tokenizer() -> Any:
    """Byte-level BPE with merges learnt from the captions and questions of 300 shapes scenes (a split of its own,
    so the test scenes are not looked at), the same in every call."""
    from ...data.shapes import make_example
    from .tokenization_meter import byte_level_tokenizer

    texts = []
    for index in range(300):
        example = make_example("validation", 1234, index, 32, 1, 4)
        texts += example["captions"] + example["questions"]["question"] + example["questions"]["answer"]
    return byte_level_tokenizer(texts, vocab_size=512)


def demo_config() -> Any:
    """A small METER: CLIP-style ViT (32 px, patches of 8, 2 blocks), RoBERTa-style text encoder (2 layers) and 2
    co-attention layer pairs, all 64 wide with 4 heads; no dropout (a few hundred steps)."""
    from .configuration_meter import MeterConfig

    tokenizer = demo_tokenizer()
    tower = {"hidden_size": DEMO_WIDTH, "intermediate_size": 2 * DEMO_WIDTH, "num_attention_heads": 4}
    return MeterConfig(
        vision_config={**tower, "num_hidden_layers": 2, "image_size": DEMO_IMAGE_SIZE, "patch_size": DEMO_PATCH_SIZE,
                       "attention_dropout": 0.0},
        text_config={**tower, "num_hidden_layers": 2, "vocab_size": len(tokenizer),
                     "max_position_embeddings": DEMO_TEXT_LENGTH + tokenizer.pad_token_id + 1,
                     "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
        hidden_size=DEMO_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * DEMO_WIDTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )  # fmt: skip


def demo_processor() -> Any:
    from .processing_meter import MeterProcessor

    return MeterProcessor.from_model_config(demo_config(), tokenizer=demo_tokenizer())


def _matching_pairs(test: Any) -> tuple[list, list[str], list[int], list[int]]:
    """Every test image with each of its captions (matched) and with the same caption of the next scene whose caption
    differs (shuffled): images, texts, labels (1 = matched) and the scene of each pair."""
    images = [image.convert("RGB") for image in test["image"]]
    captions = list(test["captions"])
    pairs_images, texts, labels, scenes = [], [], [], []
    for index, own in enumerate(captions):
        for k, caption in enumerate(own):
            offset = 1
            while offset < len(captions) and captions[(index + offset) % len(captions)][k] == caption:
                offset += 1
            shuffled = captions[(index + offset) % len(captions)][k]
            for text, label in ((caption, 1), (shuffled, 0)):
                pairs_images.append(images[index])
                texts.append(text)
                labels.append(label)
                scenes.append(index)
    return pairs_images, texts, labels, scenes


def demo_score(model_dir: Path, test: Any) -> DemoScore:
    """ITM accuracy of `model_dir/itm` on matched vs shuffled test pairs (a pair is called a match when its rank
    score is positive, i.e. the probability it was trained to give is above 0.5) and VQA accuracy of
    `model_dir/vqa` on the test questions, both loaded from their folders by the pipelines."""
    from transformers import pipeline

    from ...data import task_dataset
    from ...evaluation.vqa import vqa_accuracy

    images, texts, labels, scenes = _matching_pairs(test)
    matcher = pipeline("image-text-matching", model=str(model_dir / "itm"), batch_size=PIPELINE_BATCH)
    scores = [result["score"] for result in matcher(images, texts)]
    itm = sum((score > 0) == bool(label) for score, label in zip(scores, labels, strict=True)) / len(labels)

    questions = task_dataset(test, "vqa")
    questions = {name: list(questions[name]) for name in ("image", "question", "answer", "answers", "scene_id")}
    answerer = pipeline("vlzoo-visual-question-answering", model=str(model_dir / "vqa"), batch_size=PIPELINE_BATCH)
    question_images = [image.convert("RGB") for image in questions["image"]]
    predictions = [result[0]["answer"] for result in answerer(question_images, questions["question"], top_k=1)]
    vqa = vqa_accuracy(predictions, questions["answers"])

    examples = []
    for index in range(min(FIGURE_EXAMPLES, len(test))):
        pair = scenes.index(index)  # the scene's first caption, matched then shuffled
        question = next(i for i, scene in enumerate(questions["scene_id"]) if scene == test[index]["scene_id"])
        examples.append(
            {
                "caption": texts[pair],
                "caption_score": scores[pair],
                "shuffled": texts[pair + 1],
                "shuffled_score": scores[pair + 1],
                "question": questions["question"][question],
                "answer": questions["answer"][question],
                "prediction": predictions[question],
            }
        )
    return DemoScore(vqa, {"itm": itm, "vqa": vqa, "examples": examples})


def demo_references(test: Any, train: Any) -> dict[str, float]:
    """`chance` (0.5: half the ITM pairs match) and `prior`: the VQA accuracy of answering each test question with
    the most frequent training answer of its question type."""
    from ...evaluation.vqa import normalize_vqa_answer, vqa_accuracy

    train_rows, test_rows = _question_columns(train), _question_columns(test)
    counts: dict[str, Counter] = {}
    for kind, answer in zip(train_rows["type"], train_rows["answer"], strict=True):
        counts.setdefault(kind, Counter())[normalize_vqa_answer(answer)] += 1
    overall = Counter(normalize_vqa_answer(a) for a in train_rows["answer"]).most_common(1)[0][0]
    guesses = [counts[kind].most_common(1)[0][0] if kind in counts else overall for kind in test_rows["type"]]
    return {"chance": 0.5, "prior": vqa_accuracy(guesses, [[answer] for answer in test_rows["answer"]])}


def _question_columns(split: Any) -> dict[str, list[str]]:
    """Question types and answers of a scene split, read without decoding its images."""
    columns: dict[str, list[str]] = {"type": [], "answer": []}
    for scene in split.select_columns(["questions"])["questions"]:
        columns["type"] += scene["type"]
        columns["answer"] += scene["answer"]
    return columns


def demo_figure(path: Path, test: Any, results: Mapping[str, DemoScore]) -> None:
    """Test scenes with one matched and one shuffled caption (rank scores) and one question (METER's answer against
    the truth), then each model's accuracies."""
    font = ImageFont.load_default()
    thumb, column, row = 112, 236, 218
    canvas = Image.new("RGB", (8 + column * FIGURE_EXAMPLES, row * len(results)), "white")
    draw = ImageDraw.Draw(canvas)
    for line, (name, result) in enumerate(results.items()):
        top = line * row
        for col, example in enumerate(result.details["examples"]):
            x = 8 + col * column
            canvas.paste(test[col]["image"].convert("RGB").resize((thumb, thumb), Image.NEAREST), (x, top + 4))
            y = top + thumb + 10
            for text, score, truth in (
                (example["caption"], example["caption_score"], True),
                (example["shuffled"], example["shuffled_score"], False),
            ):
                color = "green" if (score > 0) == truth else "red"
                draw.text((x, y), f"{score:+.2f} {text[:34]}", fill=color, font=font)
                y += 14
            draw.text((x, y + 4), example["question"][:38], fill="black", font=font)
            right = example["prediction"] == example["answer"]
            draw.text((x, y + 18), f"{name}: {example['prediction']}", fill="green" if right else "red", font=font)
            draw.text((x, y + 32), f"truth: {example['answer']}", fill="black", font=font)
        details = result.details
        draw.text(
            (8, top + row - 16),
            f"{name}: itm accuracy {details['itm']:.3f} (chance 0.5), vqa accuracy {details['vqa']:.3f}",
            fill="black",
            font=font,
        )
    canvas.save(path)


__all__ = [
    "demo_config",
    "demo_figure",
    "demo_processor",
    "demo_references",
    "demo_score",
    "demo_tokenizer",
]
