"""METER trains through the registry (`model.task`) with the shared objectives on shapes."""

import pytest
from transformers import AutoConfig

from vlzoo.training.recipe import run_training

TINY = (
    "model.preset=clip16-224-pretrain",
    "model.config.vision_config={hidden_size: 64, intermediate_size: 64, num_hidden_layers: 1, image_size: 32}",
    "model.config.text_config={vocab_size: 261, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, "
    "intermediate_size: 37, max_position_embeddings: 66}",
    "model.config.hidden_size=32",
    "model.config.num_hidden_layers=1",
    "model.config.num_attention_heads=4",
    "model.config.intermediate_size=37",
)
DATA = ("data.num_train=12", "data.num_validation=4", "data.num_test=1", "data.image_size=32")
SHORT = ("training.max_steps=2", "training.per_device_batch_size=4", "training.progress_bar=false")


@pytest.mark.parametrize(
    "task, architecture",
    [("vqa", "MeterForQuestionAnswering"), ("itm", "MeterForImageTextRetrieval"), ("mlm", "MeterForPreTraining")],
)
def test_train_task_through_the_registry(task, architecture, tmp_path):
    out = tmp_path / "run"
    run_training(
        None,
        ["model.family=meter", f"model.task={task}", *TINY, *DATA, f"data.cache_dir={tmp_path / 'cache'}", *SHORT,
         f"training.output_dir={out}"],
    )  # fmt: skip
    saved = AutoConfig.from_pretrained(out)
    assert saved.architectures == [architecture]
    assert (out / "model.safetensors").is_file()
    if task == "vqa":
        assert len(saved.id2label) > 2
