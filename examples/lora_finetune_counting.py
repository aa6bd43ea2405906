"""LoRA fine-tuning of MS-CLIP on a custom task: counting the shapes in a scene, zero-shot before and after.

The base model is a contrastive MS-CLIP trained on the shapes captions (pass `--base-model vlzoo-demo/ms_clip` after
`vlzoo demo`, or let the script train one for `--base-steps`). Its captions name colours and shapes, so prompts
like "three shapes" are close to chance. A LoRA adapter on the default targets (`q_proj`, `v_proj` of every block;
on MS-CLIP the shared blocks carry one adapter that both towers use) is then trained on count captions, and the
same zero-shot evaluation runs again.

    python examples/lora_finetune_counting.py --output-dir lora-counting [--base-model vlzoo-demo/ms_clip]
"""

import argparse
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model

from vlzoo import get_family
from vlzoo.data import load_shapes
from vlzoo.demo import demo_config, demo_processor
from vlzoo.evaluation import zero_shot_accuracy_from_logits
from vlzoo.models.ms_clip import MsClipModel, MsClipProcessor
from vlzoo.training import ContrastiveObjective, TrainingArguments, train

COUNT_WORDS = ["one shape", "two shapes", "three shapes", "four shapes"]


def count_task(dataset):
    """Relabel shapes scenes by their number of objects, with count captions."""

    def relabel(example):
        n = len(example["objects"]["shape"])
        return {"count": n - 1, "captions": [COUNT_WORDS[n - 1], f"a picture of {COUNT_WORDS[n - 1]}"]}

    return dataset.map(relabel, remove_columns=["captions"])


@torch.no_grad()
def zero_shot(model, processor: MsClipProcessor, dataset, batch_size: int = 64) -> float:
    model.eval()
    prompts = processor(text=[f"a picture of {words}" for words in COUNT_WORDS], return_tensors="pt", padding=True)
    text = model.get_text_features(**prompts).pooler_output
    text = text / text.norm(dim=-1, keepdim=True)
    logits = []
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        pixels = processor(images=[image.convert("RGB") for image in rows["image"]], return_tensors="pt")
        image = model.get_image_features(**pixels).pooler_output
        logits.append((image / image.norm(dim=-1, keepdim=True)) @ text.t())
    return zero_shot_accuracy_from_logits(torch.cat(logits), dataset["count"])


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="lora-counting")
    parser.add_argument("--base-model", help="a trained MS-CLIP folder (else one is trained first)")
    parser.add_argument("--base-steps", type=int, default=150)
    parser.add_argument("--lora-steps", type=int, default=150)
    parser.add_argument("--num-train", type=int, default=3000)
    parser.add_argument("--num-test", type=int, default=400)
    parser.add_argument("--rank", type=int, default=8)
    args = parser.parse_args(argv)
    output = Path(args.output_dir)

    data = load_shapes(num_train=args.num_train, num_validation=16, num_test=args.num_test)
    processor = demo_processor()
    if args.base_model:
        model = MsClipModel.from_pretrained(args.base_model)
        processor = MsClipProcessor.from_pretrained(args.base_model)
    else:
        torch.manual_seed(0)
        model = MsClipModel(demo_config("ms_clip"))
        base_args = TrainingArguments(
            output_dir=str(output / "base"), max_steps=args.base_steps, per_device_batch_size=64, learning_rate=1e-3
        )
        train(model, ContrastiveObjective(processor), data["train"], args=base_args, processor=processor)

    task_train, task_test = count_task(data["train"]), count_task(data["test"])
    before = zero_shot(model, processor, task_test)

    targets = list(get_family("ms_clip").lora_target_modules)
    peft_model = get_peft_model(model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules=targets))
    peft_model.print_trainable_parameters()
    lora_args = TrainingArguments(
        output_dir=str(output / "adapter"), max_steps=args.lora_steps, per_device_batch_size=64, learning_rate=2e-3
    )
    train(peft_model, ContrastiveObjective(processor), task_train, args=lora_args)
    after = zero_shot(peft_model, processor, task_test)

    # the adapter is in output/adapter; merging gives a plain MsClipModel folder for pipeline(...)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(output / "merged")
    processor.save_pretrained(output / "merged")
    chance = 1.0 / len(COUNT_WORDS)
    print(f"counting zero-shot accuracy: before={before:.3f} after={after:.3f} chance={chance:.3f}")
    return {"before": before, "after": after, "chance": chance}


if __name__ == "__main__":
    main()
