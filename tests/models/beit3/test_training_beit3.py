"""The shared objectives train BEiT-3 heads picked through the registry (`model.task`)."""

import torch
from PIL import Image

from tests.models.beit3.tester import TESTER, tiny_config
from vlzoo import get_family


def _rows():
    colours = {"red": (220, 20, 20), "blue": (20, 20, 220)}
    return [
        {"image": Image.new("RGB", (40, 36), rgb), "question": "what color is the circle ?", "answers": [name] * 3,
         "caption": f"a {name} circle", "captions": [f"a {name} circle"]}
        for name, rgb in colours.items()
    ]  # fmt: skip


def _step(model, objective, batch) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = objective.compute_loss(model, batch)
    loss.backward()
    optimizer.step()
    return float(loss)


def test_vqa_objective_trains_the_vqa_head():
    family = get_family("beit3")
    id2label = {0: "red", 1: "blue"}
    torch.manual_seed(0)
    model = family.head("vqa")(tiny_config(id2label=id2label, label2id={"red": 0, "blue": 1})).train()
    objective = family.objective("vqa", TESTER.tiny_processor(), id2label=id2label)
    batch = objective.collate(_rows())
    assert batch["labels"].shape == (2, 2)
    losses = [_step(model, objective, batch) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_contrastive_objective_trains_the_retrieval_head():
    family = get_family("beit3")
    torch.manual_seed(0)
    model = family.head("contrastive")(tiny_config()).train()
    objective = family.objective("contrastive", TESTER.tiny_processor())
    batch = objective.collate(_rows())
    loss = objective.compute_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def _caption_rows():
    return [
        {"image": Image.new("RGB", (40, 36), (220, 20, 20)), "captions": ["a red circle left of the blue square", "a red circle"]},
        {"image": Image.new("RGB", (33, 41), (20, 20, 220)), "captions": ["the blue triangle"]},
        {"image": Image.new("RGB", (32, 32), (20, 200, 20)), "captions": ["a green square above a red circle"]},
    ]  # fmt: skip


def test_captioning_objective_masks_as_the_original():
    from vlzoo.models.beit3.objective_beit3 import num_caption_masks

    processor = TESTER.tiny_processor()
    objective = get_family("beit3").objective("captioning", processor, caption_index=0)
    tokenizer = processor.tokenizer
    batch = objective.collate(_caption_rows())
    plain = processor(images=[r["image"] for r in _caption_rows()], text=[r["captions"][0] for r in _caption_rows()],
                      return_tensors="pt", padding=True)  # fmt: skip
    assert torch.equal(batch["attention_mask"], plain["attention_mask"])
    assert torch.equal(batch["pixel_values"], plain["pixel_values"])
    kinds = {"mask": 0, "kept": 0, "random": 0}
    for row in range(3):
        real = int(plain["attention_mask"][row].sum())
        targets = (batch["labels"][row] != -100).nonzero().flatten().tolist()
        assert len(targets) == num_caption_masks(real, 0.6) and min(targets) >= 1 and max(targets) < real
        assert torch.equal(batch["labels"][row, targets], plain["input_ids"][row, targets])
        others = [i for i in range(plain["input_ids"].shape[1]) if i not in targets]
        assert torch.equal(batch["input_ids"][row, others], plain["input_ids"][row, others])
        for position in targets:
            value, original = int(batch["input_ids"][row, position]), int(plain["input_ids"][row, position])
            kind = "mask" if value == tokenizer.mask_token_id else "kept" if value == original else "random"
            kinds[kind] += 1
            assert kind != "random" or 3 <= value < tokenizer.vocab_size
    assert kinds["mask"] > kinds["kept"] + kinds["random"]
    assert [num_caption_masks(n, 0.6) for n in (2, 3, 4, 10)] == [1, 2, 2, 6]
    # the draws are keyed on (seed, epoch, caption): the same batch again, another one in the next epoch
    assert torch.equal(objective.collate(_caption_rows())["input_ids"], batch["input_ids"])
    objective.set_epoch(1, 0)
    assert not torch.equal(objective.collate(_caption_rows())["labels"], batch["labels"])


def test_captioning_objective_trains_the_captioning_head():
    family = get_family("beit3")
    torch.manual_seed(0)
    model = family.head("captioning")(tiny_config()).train()
    objective = family.objective("captioning", TESTER.tiny_processor(), caption_index=0)
    batch = objective.collate(_caption_rows())
    expected = model(**{k: v for k, v in batch.items()}).loss  # the model's own label-smoothed loss
    assert torch.allclose(objective.compute_loss(model, batch), expected)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(6):
        loss = objective.compute_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0] - 0.1, losses


def _tiny_folder(path, head, **overrides):
    head(tiny_config(**overrides)).save_pretrained(path)
    TESTER.tiny_processor().save_pretrained(path)
    return path


def test_vlzoo_train_captioning_on_shapes(tmp_path):
    from vlzoo.models.beit3 import Beit3ForCaptioning
    from vlzoo.training.recipe import run_training

    folder = _tiny_folder(tmp_path / "tiny", Beit3ForCaptioning)
    overrides = [
        "model.family=beit3", "model.task=captioning", f"model.pretrained={folder}", "model.objective={max_length: 24}",
        "data.num_train=8", "data.num_validation=4", "data.num_test=1", "data.image_size=32",
        f"data.cache_dir={tmp_path / 'cache'}", f"training.output_dir={tmp_path / 'run'}", "training.max_steps=2",
        "training.per_device_batch_size=4", "training.eval_batch_size=4", "training.eval_every_steps=2",
        "training.log_every_steps=1", "training.progress_bar=false", "training.learning_rate=1e-3",
    ]  # fmt: skip
    result = run_training(None, overrides)
    assert result.global_step == 2
    losses = [loss for _, loss in result.train_loss_history]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    metrics = result.eval_history[-1][1]
    assert torch.isfinite(torch.tensor(metrics["eval_loss"])) and 0 <= metrics["eval_token_accuracy"] <= 1
    reloaded = Beit3ForCaptioning.from_pretrained(result.final_model_dir)
    assert reloaded.generate(torch.zeros(1, 3, 32, 32), max_length=6).shape == (1, 6)


def test_vlzoo_train_image_classification_on_shapes_classes(tmp_path):
    from transformers import AutoConfig

    from vlzoo.data import load_shapes
    from vlzoo.models.beit3 import Beit3ForImageClassification
    from vlzoo.training.recipe import run_training

    shapes = load_shapes(num_train=8, num_validation=4, num_test=1, image_size=32, cache_dir=tmp_path / "cache")
    labels = get_family("beit3").objective_factory("image-classification").labels_from_data(shapes["train"])
    names = shapes["train"].features["label"].names
    assert labels == {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    folder = _tiny_folder(tmp_path / "tiny", Beit3ForImageClassification, **labels)
    overrides = ["model.family=beit3", "model.task=image-classification", f"model.pretrained={folder}",
                 "data.num_train=8", "data.num_validation=4", "data.num_test=1", "data.image_size=32",
                 f"data.cache_dir={tmp_path / 'cache'}", f"training.output_dir={tmp_path / 'run'}",
                 "training.max_steps=2", "training.per_device_batch_size=4", "training.eval_batch_size=4",
                 "training.eval_every_steps=2", "training.progress_bar=false"]  # fmt: skip
    result = run_training(None, overrides)
    assert result.global_step == 2 and all(
        torch.isfinite(torch.tensor([loss for _, loss in result.train_loss_history]))
    )
    assert AutoConfig.from_pretrained(result.final_model_dir).id2label == labels["id2label"]
    assert 0 <= result.eval_history[-1][1]["eval_accuracy"] <= 1
