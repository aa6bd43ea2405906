"""MlmObjective: the masks (rates, special tokens, batch independence, epochs), errors, and training a toy MLM head."""

import pytest
import torch
import torch.nn.functional as F
from transformers import CLIPProcessor

from vlzoo.data import task_dataset
from vlzoo.training import EvaluatingObjective, train
from vlzoo.training.objectives import MlmObjective

from .toy import toy_args
from .toy_heads import (  # noqa: F401
    ToyVisionLanguageModel,
    shapes_data,
    single_thread,
    tiny_processor,
    word_tokenizer,
    words_of,
)

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    scenes = shapes_data(tmp_path_factory.mktemp("shapes"))
    return {"captions": task_dataset(scenes, "mlm"), "processor": tiny_processor(words_of(scenes["train"]))}


def test_masks_follow_bert_rates_and_spare_special_tokens(data):
    processor = data["processor"]
    tokenizer = processor.tokenizer
    objective = MlmObjective(processor, caption_index=1)
    assert isinstance(objective, EvaluatingObjective)
    assert objective.mask_token_id == tokenizer.mask_token_id and objective.vocab_size == len(tokenizer)
    rows = list(data["captions"]["train"])
    batch = objective.collate(rows)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "labels"}
    assert batch["labels"].shape == batch["input_ids"].shape and batch["labels"].dtype == torch.long

    original = processor(
        images=[r["image"] for r in rows], text=[r["captions"][1] for r in rows], return_tensors="pt", padding=True
    )["input_ids"]
    chosen = batch["labels"] != -100
    assert torch.equal(batch["labels"][chosen], original[chosen])  # targets are the original tokens
    assert torch.equal(batch["input_ids"][~chosen], original[~chosen])  # nothing else changes
    assert not (chosen & (original == tokenizer.pad_token_id)).any()
    eligible = int((original != tokenizer.pad_token_id).sum())
    assert 0.10 < chosen.sum() / eligible < 0.20  # 15% of about 800 tokens
    masked = batch["input_ids"][chosen] == tokenizer.mask_token_id
    kept = batch["input_ids"][chosen] == original[chosen]
    assert 0.7 < masked.float().mean() < 0.9
    assert 0.03 < kept.float().mean() < 0.2


def test_a_rows_mask_depends_on_its_caption_and_epoch_only(data):
    objective = MlmObjective(data["processor"], caption_index=1, probability=0.5)
    rows = [data["captions"]["train"][i] for i in range(6)]
    together = objective.collate(rows)
    for index, row in enumerate(rows):
        alone = objective.collate([row])  # shorter padding, other neighbours
        length = alone["input_ids"].shape[1]
        assert torch.equal(alone["input_ids"][0], together["input_ids"][index, :length])
        assert torch.equal(alone["labels"][0], together["labels"][index, :length])
    objective.set_epoch(1, seed=0)
    assert not torch.equal(objective.collate(rows)["labels"], together["labels"])


def test_bad_inputs_raise(data):
    processor = data["processor"]
    no_mask = CLIPProcessor(image_processor=processor.image_processor, tokenizer=word_tokenizer(["red", "circle"]))
    no_mask.tokenizer.mask_token = None
    with pytest.raises(ValueError, match=r"add_special_tokens\(\{'mask_token'"):
        MlmObjective(no_mask)
    objective = MlmObjective(no_mask, mask_token_id=2)  # an explicit id works without a mask token
    assert objective.special_token_ids == sorted(set(no_mask.tokenizer.all_special_ids))
    with pytest.raises(ValueError, match=r"mask_token_id must be in \[0, vocab_size=2\)"):
        MlmObjective(processor, vocab_size=2)
    with pytest.raises(ValueError, match=r"probability must be a number in \(0, 1\]"):
        MlmObjective(processor, probability=0)
    with pytest.raises(ValueError, match="special_token_ids must be a list"):
        MlmObjective(processor, special_token_ids="[PAD]")
    with pytest.raises(ValueError, match=r"no column\(s\) \['captions'\]"):
        MlmObjective(processor).collate([{"image": data["captions"]["train"][0]["image"]}])
    small_vocabulary = ToyVisionLanguageModel(5)
    objective = MlmObjective(processor)
    with pytest.raises(ValueError, match="resize the model's token embeddings"):
        objective.compute_loss(
            small_vocabulary,
            objective.collate([{"image": data["captions"]["train"][0]["image"], "captions": ["[PAD]"]}]),
        )


def test_trains_and_scores_masked_tokens(data, tmp_path):
    processor, captions = data["processor"], data["captions"]
    objective = MlmObjective(processor, caption_index=1)  # the longest captions: more masked tokens to score
    model = ToyVisionLanguageModel(len(processor.tokenizer))
    args = toy_args(tmp_path, per_device_batch_size=16, num_epochs=6, eval_batch_size=5)
    result = train(model, objective, captions["train"], args=args, eval_dataset=captions["validation"])

    losses = [loss for _, loss in result.train_loss_history]
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3
    metrics = result.eval_history[-1][1]

    # The evaluation masks (fixed per caption) on the whole set in one batch; loss and accuracy over masked tokens.
    rows = list(captions["validation"])
    batch = objective._collate(rows, 1, ("eval",))
    model.eval()
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).mlm_logits
    chosen = batch["labels"] != -100
    expected_loss = F.cross_entropy(logits[chosen], batch["labels"][chosen])
    expected_accuracy = (logits[chosen].argmax(-1) == batch["labels"][chosen]).float().mean()
    assert metrics["eval_loss"] == pytest.approx(expected_loss.item(), rel=1e-5)
    assert metrics["eval_mlm_accuracy"] == pytest.approx(expected_accuracy.item())
    assert chosen.sum() > 15 and metrics["eval_mlm_accuracy"] > 0.1  # chance is about 1 / 60
