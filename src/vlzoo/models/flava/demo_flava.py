"""`vlzoo demo flava`: a small FLAVA trained contrastively on the shapes captions, then fine-tuned for VQA; scored
from the saved folders through the pipelines against chance and the question-type prior.

The demo's budget goes to the contrastive stage rather than the full pretraining objective: within a few minutes
on a CPU the MLM term over the 30,522-word vocabulary dominates the loss and the contrastive term barely moves, so
zero-shot accuracy stays near chance (`vlzoo train model.task=pretraining` runs the full objective).

Zero-shot classification reads `OUTPUT/flava/contrastive` through transformers' `zero-shot-image-classification`
pipeline (42 classes "{color} {shape}"); VQA reads `OUTPUT/flava/vqa` through vlzoo's
`vlzoo-visual-question-answering` pipeline (top answer, VQA accuracy). The prior answers each test question with the
most frequent training answer of its question type (color, shape, count, position).
"""

from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...registry import DemoScore
from .configuration_flava import FlavaConfig

DEMO_IMAGE_SIZE = 64
_EXAMPLES = 8  # test images drawn in the figure


def demo_config() -> FlavaConfig:
    """Three 96-wide towers (image 3 layers on 8 px patches, text 2 layers, fusion 2 layers), the full uncased
    WordPiece vocabulary, a small frozen codebook for the masked-image targets."""
    tower = {"hidden_size": 96, "num_attention_heads": 4, "intermediate_size": 256}
    return FlavaConfig(
        image_config={
            **tower,
            "num_hidden_layers": 3,
            "image_size": DEMO_IMAGE_SIZE,
            "patch_size": 8,
            "vocab_size": 64,
        },
        text_config={**tower, "num_hidden_layers": 2, "max_position_embeddings": 40},
        multimodal_config={**tower, "num_hidden_layers": 2},
        image_codebook_config={"hidden_size": 8, "vocab_size": 64, "num_groups": 4, "num_blocks_per_group": 1},
        projection_dim=64,
        classifier_hidden_size=192,
        classifier_dropout=0.0,
    )


def demo_processor() -> Any:
    from .processing_flava import VlzooFlavaProcessor

    return VlzooFlavaProcessor.from_model_config(demo_config())


def _question_rows(test: Any) -> Any:
    from ...data import task_dataset

    return task_dataset(test, "vqa")


def demo_score(model_dir: Path, test: Any) -> DemoScore:
    """VQA accuracy (the value) and zero-shot accuracy of the saved stages, loaded through the pipelines."""
    import torch
    from transformers import pipeline

    from ...data import class_names
    from ...evaluation.vqa import vqa_accuracy
    from ...evaluation.zero_shot_shapes import zero_shot_scores

    images = [image.convert("RGB") for image in test["image"]]
    labels = class_names()
    probabilities = zero_shot_scores(model_dir / "contrastive", images, labels, description="zero-shot flava")
    guesses = probabilities.argmax(dim=1)
    zero_shot = float((guesses == torch.tensor(test["label"])).float().mean())

    rows = _question_rows(test)
    answer = pipeline("vlzoo-visual-question-answering", model=str(model_dir / "vqa"))
    questions = [{"image": row["image"].convert("RGB"), "question": row["question"]} for row in rows]
    predictions = [result[0]["answer"] for result in answer(questions, top_k=1, batch_size=32)]
    vqa = vqa_accuracy(predictions, rows["answers"])

    examples = []
    first_question = {}
    for index, scene in enumerate(rows["scene_id"]):
        first_question.setdefault(scene, index)
    for index in range(min(_EXAMPLES, len(images))):
        question = first_question.get(test["scene_id"][index])
        examples.append(
            {
                "truth": labels[test["label"][index]],
                "zero_shot": labels[int(guesses[index])],
                "question": rows["question"][question] if question is not None else "",
                "answer": predictions[question] if question is not None else "",
                "answers": list(rows["answers"][question]) if question is not None else [],
            }
        )
    return DemoScore(vqa, {"zero_shot": zero_shot, "vqa": vqa, "examples": examples})


def demo_references(test: Any, train: Any) -> dict[str, float]:
    """Zero-shot chance (1 / 42) and the question-type prior scored on the test questions."""
    from ...data import class_names, task_dataset
    from ...evaluation.vqa import normalize_vqa_answer, vqa_accuracy

    counts: dict[str, Counter] = defaultdict(Counter)
    train_rows = task_dataset(train, "vqa")
    for kind, answer in zip(train_rows["question_type"], train_rows["answer"], strict=True):
        counts[kind][normalize_vqa_answer(answer)] += 1
    overall = sum(counts.values(), Counter()).most_common(1)[0][0]
    rows = _question_rows(test)
    guesses = [counts[kind].most_common(1)[0][0] if counts[kind] else overall for kind in rows["question_type"]]
    return {"chance": 1.0 / len(class_names()), "prior": vqa_accuracy(guesses, rows["answers"])}


def demo_figure(path: Path, test: Any, results: Mapping[str, DemoScore]) -> None:
    """Test images with the zero-shot class (green when right) and one question with FLAVA's answer."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    thumb, line = 112, 12
    rows = [(name, score.details["examples"]) for name, score in results.items()]
    shown = max(len(examples) for _, examples in rows)
    height = len(rows) * (thumb + 6 * line + 8) + 4
    canvas = Image.new("RGB", (4 + shown * 180, height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, examples) in enumerate(rows):
        top = 4 + r * (thumb + 6 * line + 8)
        for c, example in enumerate(examples):
            x = 4 + c * 180
            canvas.paste(test["image"][c].convert("RGB").resize((thumb, thumb), Image.NEAREST), (x, top))
            y = top + thumb + 2
            right = example["zero_shot"] == example["truth"]
            draw.text((x, y), f"true: {example['truth']}", fill="black", font=font)
            draw.text((x, y + line), f"{name}: {example['zero_shot']}", fill="green" if right else "red", font=font)
            words = example["question"].split()
            draw.text((x, y + 2 * line), " ".join(words[:5]), fill="black", font=font)
            draw.text((x, y + 3 * line), " ".join(words[5:10]), fill="black", font=font)
            correct = example["answer"] in example["answers"]
            draw.text((x, y + 4 * line), f"-> {example['answer']}", fill="green" if correct else "red", font=font)
    canvas.save(path)


__all__ = ["DEMO_IMAGE_SIZE", "demo_config", "demo_figure", "demo_processor", "demo_references", "demo_score"]
