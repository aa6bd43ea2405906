"""ItmObjective: which pairs reach the model (random and hard negatives), errors, and training a toy ITM head."""

import pytest
import torch
from torch import nn

from vlzoo.data import task_dataset
from vlzoo.evaluation import image_text_matching_accuracy
from vlzoo.losses import image_text_matching_loss
from vlzoo.training import EvaluatingObjective, train
from vlzoo.training.objectives import ItmObjective

from .toy import toy_args
from .toy_heads import ToyVisionLanguageModel, shapes_data, single_thread, tiny_processor, words_of  # noqa: F401

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    scenes = shapes_data(tmp_path_factory.mktemp("shapes"))
    return {"captions": task_dataset(scenes, "itm"), "processor": tiny_processor(words_of(scenes["train"]))}


class Recorder(nn.Module):
    """Runs the toy model and keeps the inputs and outputs of every call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.calls: list[tuple[dict, object]] = []

    def forward(self, **inputs):
        outputs = self.model(**inputs)
        self.calls.append((inputs, outputs))
        return outputs


class FixedSimilarity(nn.Module):
    """A stand-in dual encoder whose `logits_per_image` is set by the test."""

    def __init__(self, similarity: torch.Tensor):
        super().__init__()
        self.similarity = similarity

    def forward(self, **inputs):
        return {"logits_per_image": self.similarity}


def distinct_rows(data, count: int) -> list[dict]:
    """`count` training rows whose first captions all differ."""
    rows, seen = [], set()
    for row in data["captions"]["train"]:
        if row["captions"][0] not in seen:
            seen.add(row["captions"][0])
            rows.append(row)
        if len(rows) == count:
            return rows
    raise AssertionError("not enough distinct captions")


def pairs_seen(objective: ItmObjective, batch: dict, inputs: dict) -> list[tuple[int, int]]:
    """(image row, text row) of each pair the model got, found by comparing its inputs with the batch."""
    pairs = []
    for pixels, ids in zip(inputs["pixel_values"], inputs["input_ids"], strict=True):
        image = [i for i, p in enumerate(batch["pixel_values"]) if torch.equal(p, pixels)]
        text = [i for i, t in enumerate(batch["input_ids"]) if torch.equal(t, ids)]
        assert len(image) == 1 and len(text) >= 1
        pairs.append((image[0], text[0]))
    return pairs


def test_collate_gives_matched_pairs_only(data):
    objective = ItmObjective(data["processor"], caption_index=1)
    assert isinstance(objective, EvaluatingObjective)
    rows = distinct_rows(data, 5)
    batch = objective.collate(rows)
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"}
    assert batch["pixel_values"].shape == (5, 3, 32, 32) and batch["input_ids"].dtype == torch.long
    texts = data["processor"].tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert texts == [
        data["processor"].tokenizer.decode(data["processor"].tokenizer(r["captions"][1])["input_ids"]) for r in rows
    ]


def test_random_negatives_pair_each_image_and_text_with_another_row(data):
    rows = distinct_rows(data, 8)
    objective = ItmObjective(data["processor"], caption_index=0)
    objective.set_epoch(0, seed=3)
    model = Recorder(ToyVisionLanguageModel(len(data["processor"].tokenizer)))
    batch = objective.collate(rows)
    loss = objective.compute_loss(model, batch)

    ((inputs, outputs),) = model.calls
    pairs = pairs_seen(objective, batch, inputs)
    assert pairs[:8] == [(i, i) for i in range(8)]
    negatives = pairs[8:]
    assert len(negatives) == 16 and all(image != text for image, text in negatives)
    assert sorted(image for image, _ in negatives[:8]) == list(range(8))  # every image gets a negative text
    assert sorted(text for _, text in negatives[8:]) == list(range(8))  # every text gets a negative image
    labels = torch.tensor([1] * 8 + [0] * 16)
    torch.testing.assert_close(loss, image_text_matching_loss(outputs.itm_logits, labels))

    model.calls.clear()
    objective.compute_loss(model, batch)
    assert pairs_seen(objective, batch, model.calls[-1][0]) == pairs  # same seed and epoch: same draw
    objective.set_epoch(1, seed=3)
    objective.compute_loss(model, batch)
    assert pairs_seen(objective, batch, model.calls[-1][0]) != pairs


def test_identical_captions_are_never_negatives(data):
    rows = distinct_rows(data, 3)
    same = [{**rows[0], "image": row["image"]} for row in rows]  # three images, one caption
    objective = ItmObjective(data["processor"], caption_index=0)
    model = Recorder(ToyVisionLanguageModel(len(data["processor"].tokenizer)))
    batch = objective.collate(same)
    loss = objective.compute_loss(model, batch)
    ((inputs, outputs),) = model.calls
    assert inputs["input_ids"].shape[0] == 3  # no negative is possible: matched pairs only
    torch.testing.assert_close(loss, image_text_matching_loss(outputs.itm_logits, torch.ones(3, dtype=torch.long)))

    mixed = same + distinct_rows(data, 5)[3:]
    batch = objective.collate(mixed)
    texts = [r["captions"][0] for r in mixed]
    for epoch in range(5):
        objective.set_epoch(epoch, seed=0)
        model.calls.clear()
        objective.compute_loss(model, batch)
        for image, text in pairs_seen(objective, batch, model.calls[-1][0])[len(mixed) :]:
            assert texts[image] != texts[text]


def test_hard_negatives_follow_the_similarity(data):
    rows = distinct_rows(data, 6)
    similarity = torch.zeros(6, 6)
    similarity[torch.arange(6), (torch.arange(6) + 1) % 6] = 50.0  # image i is most similar to text i + 1
    objective = ItmObjective(data["processor"], negatives="hard", similarity_model=FixedSimilarity(similarity))
    model = Recorder(ToyVisionLanguageModel(len(data["processor"].tokenizer)))
    batch = objective.collate(rows)
    objective.compute_loss(model, batch)
    ((inputs, _),) = model.calls  # the similarity model, not the trained one, gave the similarities
    negatives = pairs_seen(objective, batch, inputs)[6:]
    assert negatives[:6] == [(i, (i + 1) % 6) for i in range(6)]  # hardest text of each image
    assert negatives[6:] == [((j - 1) % 6, j) for j in range(6)]  # hardest image of each text

    itself = ItmObjective(data["processor"], negatives="hard")  # the toy model returns logits_per_image itself
    model.calls.clear()
    loss = itself.compute_loss(model, batch)
    assert len(model.calls) == 2 and torch.isfinite(loss)


def test_bad_rows_and_options_raise(data):
    processor = data["processor"]
    row = distinct_rows(data, 2)
    with pytest.raises(ValueError, match=r"no column\(s\) \['captions'\]"):
        ItmObjective(processor).collate([{"image": row[0]["image"], "caption": "a red circle"}])
    with pytest.raises(ValueError, match="negatives must be one of"):
        ItmObjective(processor, negatives="semi-hard")
    with pytest.raises(ValueError, match="only for hard negatives"):
        ItmObjective(processor, similarity_model=FixedSimilarity(torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="caption_index must be an int"):
        ItmObjective(processor, caption_index=-1)

    class MatchOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = ToyVisionLanguageModel(len(processor.tokenizer))

        def forward(self, **inputs):
            return {"itm_logits": self.model(**inputs).itm_logits}

    batch = ItmObjective(processor).collate(row)
    with pytest.raises(ValueError, match="negatives='hard' needs image-text similarities"):
        ItmObjective(processor, negatives="hard").compute_loss(MatchOnly(), batch)

    class WrongHead(MatchOnly):
        def forward(self, **inputs):
            return {"itm_logits": self.model(**inputs).logits}

    with pytest.raises(ValueError, match=r"itm_logits have shape \(\d+, 3\)"):
        ItmObjective(processor).compute_loss(WrongHead(), batch)


def independent_metrics(model: nn.Module, processor, rows: list[dict]) -> dict[str, float]:
    """Each image with its first caption and with the next different first caption, scored in one call."""
    texts = [r["captions"][0] for r in rows]
    negatives = []
    for index, text in enumerate(texts):
        other = next(
            texts[(index + k) % len(texts)] for k in range(1, len(texts)) if texts[(index + k) % len(texts)] != text
        )
        negatives.append(other)
    images = [r["image"] for r in rows]
    inputs = processor(images=images + images, text=texts + negatives, return_tensors="pt", padding=True)
    labels = torch.tensor([1] * len(rows) + [0] * len(rows))
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).itm_logits
    model.train()
    return {
        "eval_loss": image_text_matching_loss(logits, labels).item(),
        "eval_itm_accuracy": image_text_matching_accuracy(logits, labels),
        "eval_itm_accuracy_matched": image_text_matching_accuracy(logits[: len(rows)], labels[: len(rows)]),
    }


def test_trains_and_scores_matched_and_mismatched_pairs(data, tmp_path):
    processor, captions = data["processor"], data["captions"]
    objective = ItmObjective(processor, caption_index=0)
    model = ToyVisionLanguageModel(len(processor.tokenizer))
    args = toy_args(tmp_path, per_device_batch_size=16, num_epochs=15, eval_batch_size=5)
    result = train(model, objective, captions["train"], args=args, eval_dataset=captions["validation"])

    losses = [loss for _, loss in result.train_loss_history]
    quarter = len(losses) // 4
    assert sum(losses[-quarter:]) < 0.85 * sum(losses[:quarter])
    metrics = result.eval_history[-1][1]
    expected = independent_metrics(model, processor, list(captions["validation"]))
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, rel=1e-5), name
