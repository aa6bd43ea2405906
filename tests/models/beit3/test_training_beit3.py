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
