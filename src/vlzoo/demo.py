"""`vlzoo demo`: train MS-CLIP and the vanilla CLIP baseline on shapes, reload through pipeline(), compare zero-shot."""

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from .conversion.output_dir import atomic_output_dir
from .data import class_names, load_shapes
from .evaluation.zero_shot_shapes import zero_shot_scores
from .models.ms_clip import MsClipConfig, MsClipModel, MsClipProcessor
from .training import ContrastiveObjective, TrainingArguments, train

IMAGE_SIZE = 64


def demo_config(kind: str) -> MsClipConfig:
    """Small MS-CLIP-S (conv stem /8, branch, shared blocks) or the vanilla baseline with the same widths.

    The vanilla vision tower has as many layers as MS-CLIP's stem plus blocks, as in the paper's comparison.
    """
    vision = {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 3, "image_size": IMAGE_SIZE}
    text = {"hidden_size": 96, "intermediate_size": 384, "num_attention_heads": 3, "num_hidden_layers": 5}
    if kind == "ms_clip":
        vision.update(
            patch_size=8,
            num_hidden_layers=4,
            stem_strides=[2, 2, 1, 1],
            lateral_adapter_layers=[1, 2, 3],
            branch_strides=[2, 2, 2],
            adapter_kernel_sizes=[4, 2, 1],
        )
        return MsClipConfig.from_preset(
            "b32-yfcc", vision_config=vision, text_config=text, projection_dim=64, num_shared_layers=4,
            logit_scale_init_value=2.6592,
        )  # fmt: skip
    if kind == "vanilla":
        vision.update(patch_size=8, num_hidden_layers=5)
        return MsClipConfig.from_preset(
            "vanilla", vision_config=vision, text_config=text, projection_dim=64, logit_scale_init_value=2.6592
        )
    raise ValueError(f"kind must be 'ms_clip' or 'vanilla', got {kind!r}")


def demo_processor() -> MsClipProcessor:
    """The real CLIP BPE tokenizer and the original MS-CLIP transform at the demo resolution."""
    return MsClipProcessor.from_model_config(demo_config("ms_clip"))


@dataclass
class DemoResult:
    accuracy: dict[str, float]
    parameters: dict[str, int]
    chance: float
    seconds: float
    figure: Path

    def summary(self) -> str:
        return (
            f"zero-shot accuracy: ms_clip={self.accuracy['ms_clip']:.3f} vanilla={self.accuracy['vanilla']:.3f} "
            f"chance={self.chance:.3f} params: ms_clip={self.parameters['ms_clip']} "
            f"vanilla={self.parameters['vanilla']}"
        )


def _figure(path: Path, images: list, truth: list[int], labels: list[str], scores: dict[str, torch.Tensor]) -> None:
    """Test images with true and predicted classes, and each model's image-by-class probability heatmap."""
    shown, cell, thumb = min(8, len(images)), 9, 72
    font = ImageFont.load_default()
    width = 150 + thumb * shown
    heat_top = thumb + 58
    height = heat_top + len(scores) * (len(labels) * cell + 30)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for col in range(shown):
        x = 150 + col * thumb
        canvas.paste(images[col].resize((thumb - 4, thumb - 4), Image.NEAREST), (x, 0))
        draw.text((x, thumb), labels[truth[col]][:12], fill="black", font=font)
        for k, (name, table) in enumerate(scores.items()):
            guess = int(table[col].argmax())
            color = "green" if guess == truth[col] else "red"
            draw.text((x, thumb + 14 * (k + 1)), f"{name[:2]}:{labels[guess][:9]}", fill=color, font=font)
    for k, (name, table) in enumerate(scores.items()):
        top = heat_top + k * (len(labels) * cell + 30)
        draw.text((4, top), f"{name}: P(class | image)", fill="black", font=font)
        top += 14
        peak = float(table[:shown].max()) or 1.0
        for row, label in enumerate(labels):
            y = top + row * cell
            draw.text((4, y - 2), label, fill="black", font=font)
            for col in range(shown):
                level = int(255 * (1 - float(table[col, row]) / peak))
                x = 150 + col * thumb
                draw.rectangle([x, y, x + thumb - 5, y + cell - 2], fill=(255, level, level))
    canvas.save(path)


def run_demo(
    output_dir: str | Path = "vlzoo-demo",
    *,
    max_steps: int = 250,
    batch_size: int = 64,
    num_train: int = 6000,
    num_test: int = 500,
    seed: int = 0,
    overwrite: bool = False,
) -> DemoResult:
    """Train both models with the same budget, save, reload with `pipeline(...)` and evaluate on the test split.

    Everything is written into a temporary sibling of `output_dir`, which becomes `output_dir` only when the demo
    succeeds. An existing non-empty `output_dir` is refused before any work; with `overwrite=True` one that vlzoo
    wrote (and that holds nothing else) is replaced as a whole, so no file of an earlier run survives.

    Raises:
        FileExistsError: `output_dir` holds files and `overwrite` is false, or it holds files vlzoo did not write.
    """
    for name, value in (("max_steps", max_steps), ("batch_size", batch_size), ("num_train", num_train)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    start = time.perf_counter()
    with atomic_output_dir(output_dir, overwrite=overwrite, writer="vlzoo demo") as temporary:
        result = _run(temporary, max_steps, batch_size, num_train, num_test, seed)
    result.figure = Path(output_dir) / result.figure.name
    result.seconds = time.perf_counter() - start
    return result


def _run(output: Path, max_steps: int, batch_size: int, num_train: int, num_test: int, seed: int) -> DemoResult:
    start = time.perf_counter()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    logging.getLogger("transformers").setLevel(logging.ERROR)

    data = load_shapes(num_train=num_train, num_validation=64, num_test=num_test, image_size=IMAGE_SIZE, seed=seed)
    labels = class_names()
    test = data["test"]
    images = [image.convert("RGB") for image in test["image"]]
    truth = list(test["label"])

    accuracy, parameters, scores = {}, {}, {}
    for name in ("ms_clip", "vanilla"):
        torch.manual_seed(seed)
        model = MsClipModel(demo_config(name))
        parameters[name] = sum(p.numel() for p in model.parameters())
        processor = demo_processor()
        args = TrainingArguments(
            output_dir=str(output / name),
            max_steps=max_steps,
            per_device_batch_size=batch_size,
            learning_rate=1e-3,
            weight_decay=0.1,
            warmup_steps=max_steps // 10,
            seed=seed,
            log_every_steps=50,
        )
        train(model, ContrastiveObjective(processor), data["train"], args=args, processor=processor)
        scores[name] = zero_shot_scores(output / name, images, labels, description=f"zero-shot {name}")
        accuracy[name] = float((scores[name].argmax(dim=1) == torch.tensor(truth)).float().mean())

    figure = output / "zero_shot.png"
    _figure(figure, images, truth, labels, scores)
    result = DemoResult(accuracy, parameters, 1.0 / len(labels), time.perf_counter() - start, figure)
    summary = {
        "accuracy": accuracy,
        "parameters": parameters,
        "chance": result.chance,
        "seconds": result.seconds,
        "max_steps": max_steps,
        "batch_size": batch_size,
        "num_train": num_train,
        "num_test": len(images),
    }
    (output / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    return result


__all__ = ["DemoResult", "demo_config", "demo_processor", "run_demo"]
