"""METER trains through the registry (`model.task`): the shared objectives, and MLM + ITM pretraining."""

import math

import pytest
import torch
from PIL import Image
from transformers import AutoConfig

from vlzoo.models.meter import MeterForPreTraining, MeterProcessor
from vlzoo.models.meter.objective_meter import MeterPretrainingObjective
from vlzoo.training.objectives.common import choose_caption
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


def test_pretraining_task_trains_mlm_and_itm_through_the_registry(tmp_path):
    out = tmp_path / "run"
    result = run_training(
        None,
        ["model.family=meter", "model.task=pretraining", *TINY, *DATA, f"data.cache_dir={tmp_path / 'cache'}",
         *SHORT, "training.eval_every_steps=2", f"training.output_dir={out}"],
    )  # fmt: skip
    assert result.global_step == 2
    assert all(math.isfinite(loss) and loss > 0 for _, loss in result.train_loss_history)
    metrics = result.eval_history[-1][1]
    assert {"eval_mlm_accuracy", "eval_itm_accuracy", "eval_mlm_loss", "eval_itm_loss"} <= set(metrics)
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_mlm_loss"] + metrics["eval_itm_loss"])
    assert AutoConfig.from_pretrained(out).architectures == ["MeterForPreTraining"]


def _rows(count: int = 4) -> list[dict]:
    colors = ("red", "green", "blue", "yellow", "purple", "orange")
    return [
        {"image": Image.new("RGB", (40, 36), color), "captions": [f"a {color} square", f"one {color} thing"]}
        for color in colors[:count]
    ]


def _tiny_model_and_processor():
    from .tester import tiny_config

    torch.manual_seed(0)
    config = tiny_config()
    return MeterForPreTraining(config).eval(), MeterProcessor.from_model_config(config)


def test_pretraining_loss_is_the_weighted_sum_of_mlm_and_itm():
    model, processor = _tiny_model_and_processor()
    objective = MeterPretrainingObjective(processor, mlm_weight=0.25, itm_weight=2.0, mlm_probability=0.5)
    objective.set_epoch(3, 7)
    batch = objective.collate(_rows())
    assert objective.negatives == "random"
    assert (batch["labels"] != -100).any()
    mlm_batch = objective.mlm.collate(_rows())  # the same rows, epoch and seed give the same masks
    torch.testing.assert_close(batch["input_ids"], mlm_batch["input_ids"], rtol=0, atol=0)
    clean = processor(images=[r["image"] for r in _rows()], text=[
        choose_caption(r["captions"], "captions", None, 7, 3) for r in _rows()
    ])  # fmt: skip
    with torch.no_grad():
        mlm = objective.mlm.compute_loss(model, mlm_batch)
        itm = objective.itm.compute_loss(model, {**clean})
        total = objective.compute_loss(model, batch)
    torch.testing.assert_close(total, 0.25 * mlm + 2.0 * itm)


class _StubDualEncoder(torch.nn.Module):
    """Records its inputs; row i of the batch is most similar to text (i + 1) % B."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))
        self.calls: list[dict] = []

    def forward(self, input_ids, attention_mask=None, pixel_values=None):
        self.calls.append({"input_ids": input_ids, "pixel_values": pixel_values})
        size = input_ids.shape[0]
        similarity = torch.zeros(size, size) + self.anchor
        similarity[torch.arange(size), (torch.arange(size) + 1) % size] = 60.0
        return {"logits_per_image": similarity}


def test_hard_itm_negatives_come_from_the_dual_encoder_on_its_own_inputs():
    from tests.models.ms_clip.tester import tiny_processor as ms_clip_processor

    model, processor = _tiny_model_and_processor()
    dual, dual_processor = _StubDualEncoder(), ms_clip_processor()
    objective = MeterPretrainingObjective(processor, similarity_model=dual, similarity_processor=dual_processor)
    assert objective.negatives == "hard"
    objective.set_epoch(0, 0)
    rows = _rows()
    batch = objective.collate(rows)
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True)
    with torch.no_grad():
        objective.compute_loss(model, batch)
    texts = [choose_caption(r["captions"], "captions", None, 0, 0) for r in rows]
    expected = dual_processor(images=[r["image"] for r in rows], text=texts, return_tensors="pt", padding=True)
    (call,) = dual.calls
    torch.testing.assert_close(call["input_ids"], expected["input_ids"], rtol=0, atol=0)
    torch.testing.assert_close(call["pixel_values"], expected["pixel_values"], rtol=0, atol=0)
    mlm_ids, itm_ids = seen
    clean = processor(images=[r["image"] for r in rows], text=texts)["input_ids"]
    size = len(rows)
    torch.testing.assert_close(itm_ids[:size], clean, rtol=0, atol=0)  # the matched pairs, unmasked
    # image i's negative text is caption (i + 1) % B, the one the dual encoder ranks highest
    torch.testing.assert_close(itm_ids[size : 2 * size], clean.roll(-1, dims=0), rtol=0, atol=0)


def test_pretraining_takes_a_dual_encoder_folder_from_the_config(tmp_path):
    from tests.models.ms_clip.tester import tiny_config as ms_clip_config
    from tests.models.ms_clip.tester import tiny_processor as ms_clip_processor
    from vlzoo.models.ms_clip import MsClipModel

    dual_processor = ms_clip_processor()
    text = {"vocab_size": len(dual_processor.tokenizer), "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 40,
            "bos_token_id": dual_processor.tokenizer.bos_token_id,
            "eos_token_id": dual_processor.tokenizer.eos_token_id}  # fmt: skip
    MsClipModel(ms_clip_config(text_config=text)).save_pretrained(tmp_path / "dual")
    dual_processor.save_pretrained(tmp_path / "dual")
    out = tmp_path / "run"
    result = run_training(
        None,
        ["model.family=meter", "model.task=pretraining", f"model.objective={{similarity_model: {tmp_path / 'dual'}}}",
         *TINY, *DATA, f"data.cache_dir={tmp_path / 'cache'}", *SHORT, f"training.output_dir={out}"],
    )  # fmt: skip
    assert all(math.isfinite(loss) for _, loss in result.train_loss_history)


def test_pretraining_objective_refuses_bad_options():
    _, processor = _tiny_model_and_processor()
    with pytest.raises(ValueError, match="negatives='hard' needs similarity_model"):
        MeterPretrainingObjective(processor, negatives="hard")
    with pytest.raises(ValueError, match="both 0"):
        MeterPretrainingObjective(processor, mlm_weight=0, itm_weight=0)
    with pytest.raises(ValueError, match="similarity_processor is the dual encoder's"):
        MeterPretrainingObjective(processor, similarity_processor=processor)
    with pytest.raises(ValueError, match="itm_weight must be a number"):
        MeterPretrainingObjective(processor, itm_weight=-1)


def test_itm_task_trains_the_rank_score_the_pipelines_read():
    from vlzoo.models.meter import MeterForImageTextRetrieval
    from vlzoo.models.meter.objective_meter import MeterItmObjective
    from vlzoo.registry import get_family
    from vlzoo.training.objectives import ItmObjective

    from .tester import tiny_config

    torch.manual_seed(0)
    config = tiny_config()
    model, processor = MeterForImageTextRetrieval(config), MeterProcessor.from_model_config(config)
    assert isinstance(get_family("meter").objective("itm", processor), MeterItmObjective)
    rows = _rows(5)
    shared, objective = ItmObjective(processor), MeterItmObjective(processor, rank_weight=0.5)
    batch = objective.collate(rows)
    seen = []
    model.register_forward_hook(lambda module, args, output: seen.append(output))
    loss = objective.compute_loss(model, batch)
    (output,) = seen
    size = len(rows)
    labels = torch.tensor([1.0] * size + [0.0] * (len(output.logits) - size))
    assert len(output.logits) > size  # mismatched pairs were drawn
    rank_loss = torch.nn.functional.binary_cross_entropy_with_logits(output.logits[:, 0], labels)
    torch.testing.assert_close(loss, shared.compute_loss(model, batch) + 0.5 * rank_loss)
    loss.backward()
    assert model.rank_output.weight.grad.abs().sum() > 0
    model.zero_grad()
    shared.compute_loss(model, batch).backward()
    assert model.rank_output.weight.grad is None or not model.rank_output.weight.grad.any()
