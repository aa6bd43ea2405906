"""ContrastiveObjective with a tiny transformers CLIP model and processor: batches, caption draws, training."""

import math

import pytest
import torch
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import CLIPConfig, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from vlzoo.training import ContrastiveObjective, Objective, TrainingArguments, train

WORDS = ["[PAD]", "[UNK]", "a", "an", "image", "of", "red", "green", "blue", "yellow", "square", "colour"]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (230, 220, 20)}


def tiny_processor() -> CLIPProcessor:
    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]")
    images = CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return CLIPProcessor(image_processor=images, tokenizer=fast)


def tiny_clip() -> CLIPModel:
    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4}
    text = {**tower, "vocab_size": len(WORDS), "max_position_embeddings": 16, "pad_token_id": 0, "eos_token_id": 1}
    vision = {**tower, "image_size": 32, "patch_size": 8}
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))


def rows(count: int = 8) -> list[dict]:
    names = list(COLOURS)
    result = []
    for i in range(count):
        colour = names[i % len(names)]
        captions = [f"a {colour} square", f"an image of {colour}", f"{colour} colour"]
        result.append({"image": Image.new("RGB", (40, 36), COLOURS[colour]), "captions": captions})
    return result


def texts_of(objective: ContrastiveObjective, batch: dict) -> list[str]:
    return objective.processor.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)


def test_collate_builds_clip_inputs_with_the_chosen_caption():
    objective = ContrastiveObjective(tiny_processor(), caption_index=1)
    assert isinstance(objective, Objective)
    batch = objective.collate(rows(3))
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (3, 3, 32, 32)
    assert texts_of(objective, batch) == ["an image of red", "an image of green", "an image of blue"]
    assert batch["attention_mask"].sum(dim=1).tolist() == [4, 4, 4]

    truncated = ContrastiveObjective(tiny_processor(), caption_index=1, max_length=2).collate(rows(2))
    assert truncated["input_ids"].shape == (2, 2)


def test_random_captions_depend_only_on_seed_epoch_and_row():
    objective = ContrastiveObjective(tiny_processor())
    data = rows(8)
    objective.set_epoch(0, seed=0)
    whole = texts_of(objective, objective.collate(data))
    # Row by row, or in another order (another shard, a resumed run), each row gets the same caption.
    one_by_one = [texts_of(objective, objective.collate([row]))[0] for row in reversed(data)]
    assert one_by_one[::-1] == whole
    assert texts_of(objective, objective.collate(data)) == whole

    draws = set()
    for epoch in range(6):
        objective.set_epoch(epoch, seed=0)
        draws.add(tuple(texts_of(objective, objective.collate(data))))
    assert len(draws) > 1  # different epochs draw different captions
    objective.set_epoch(0, seed=1)
    assert texts_of(objective, objective.collate(data)) != whole
    assert all(text in row["captions"] for text, row in zip(whole, data, strict=True))


def test_bad_rows_and_arguments_raise():
    objective = ContrastiveObjective(tiny_processor())
    with pytest.raises(ValueError, match="no column 'captions'"):
        objective.collate([{"image": Image.new("RGB", (8, 8)), "text": "a red square"}])
    with pytest.raises(ValueError, match="non-empty list of strings"):
        objective.collate([{"image": Image.new("RGB", (8, 8)), "captions": []}])
    with pytest.raises(ValueError, match="caption_index=5 but an example has only 3"):
        ContrastiveObjective(tiny_processor(), caption_index=5).collate(rows(1))
    with pytest.raises(ValueError, match="caption_index must be an int"):
        ContrastiveObjective(tiny_processor(), caption_index=-1)
    with pytest.raises(TypeError, match="processor must be callable"):
        ContrastiveObjective("not a processor")


def test_trains_clip_and_saves_model_with_processor(tmp_path):
    model, processor = tiny_clip(), tiny_processor()
    objective = ContrastiveObjective(processor)
    batch = objective.collate(rows(4))
    assert torch.equal(objective.compute_loss(model, batch), model(**batch, return_loss=True).loss)

    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_batch_size=4,
        num_epochs=2,
        learning_rate=1e-3,
        progress_bar=False,
        log_every_steps=1,
    )
    result = train(model, objective, rows(8), args=args, eval_dataset=rows(4), processor=processor)
    assert result.global_step == 4
    assert [step for step, _ in result.eval_history] == [4]
    assert math.isfinite(result.eval_history[0][1]["eval_loss"])

    assert (tmp_path / "processor_config.json").is_file() and (tmp_path / "tokenizer.json").is_file()
    reloaded = CLIPModel.from_pretrained(tmp_path)
    reloaded_processor = CLIPProcessor.from_pretrained(tmp_path)
    again = ContrastiveObjective(reloaded_processor, caption_index=0).collate(rows(4))
    torch.testing.assert_close(
        again["input_ids"], ContrastiveObjective(processor, caption_index=0).collate(rows(4))["input_ids"]
    )
    model.cpu().eval()  # trained on the accelerator when there is one
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**again).logits_per_image, model(**again).logits_per_image)
