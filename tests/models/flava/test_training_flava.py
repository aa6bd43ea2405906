"""`vlzoo train` on FLAVA through the registry: pretraining (contrastive + ITM + MMM with the codebook) and VQA."""

import json

import pytest
import torch

from .tester import tiny_config


def _model_config() -> dict:
    """The tiny test sizes as `model.config` overrides (integers only: YAML would read 1e-12 as a string)."""
    config = tiny_config()
    sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
             "patch_size", "vocab_size", "max_position_embeddings")  # fmt: skip
    values = {}
    for name in ("image_config", "text_config", "multimodal_config", "image_codebook_config"):
        sub = getattr(config, name).to_dict()
        values[name] = {k: v for k, v in sub.items() if k in sizes}
    values["image_codebook_config"]["freeze"] = True
    values["projection_dim"] = config.projection_dim
    return values


@pytest.mark.parametrize("task", ["pretraining", "vqa", "itm"])
def test_vlzoo_train_on_shapes(task, tmp_path):
    from vlzoo.training.recipe import run_training

    overrides = [
        "model.family=flava",
        f"model.task={task}",
        f"model.config={json.dumps(_model_config())}",
        "data.num_train=8",
        "data.num_validation=4",
        "data.num_test=1",
        "data.image_size=32",
        f"data.cache_dir={tmp_path / 'cache'}",
        f"training.output_dir={tmp_path / 'run'}",
        "training.max_steps=2",
        "training.per_device_batch_size=4",
        "training.learning_rate=1e-3",
        "training.progress_bar=false",
    ]
    result = run_training(None, overrides)
    assert result.global_step == 2
    losses = [loss for _, loss in result.train_loss_history]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_pretraining_objective_batches_cover_every_objective():
    from PIL import Image

    from vlzoo.models.flava import FlavaForPreTraining
    from vlzoo.models.flava.objective_flava import FlavaPretrainingObjective

    from .tester import tiny_processor

    objective = FlavaPretrainingObjective(tiny_processor(), probability=0.5)
    rows = [
        {"image": Image.new("RGB", (20, 20), (40 * i, 0, 0)), "captions": [f"a {word} the"]}
        for i, word in enumerate(("a", "the", "of", "and"))
    ]
    batch = objective.collate(rows)
    assert batch["codebook_pixel_values"].shape == (4, 3, 16, 16) and batch["bool_masked_pos"].shape == (4, 4)
    assert set(batch["itm_labels"].tolist()) <= {0, 1} and (batch["mlm_labels"] != -100).any()
    assert torch.equal(objective.collate(rows)["input_ids_masked"], batch["input_ids_masked"])  # keyed draws
    torch.manual_seed(0)
    model = FlavaForPreTraining(tiny_config())
    outputs = model(**batch, return_loss=True)
    info = outputs.loss_info
    assert info.itm is not None and info.global_contrastive is not None and info.mmm_image is not None
    assert info.mmm_text is not None
    assert torch.isclose(outputs.loss, sum(v for v in info.values()))
    outputs.loss.backward()
    assert model.itm_head.seq_relationship.weight.grad is not None
