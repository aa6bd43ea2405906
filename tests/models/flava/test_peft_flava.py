"""LoRA on FLAVA's default targets (`Family.lora_target_modules`): which modules it reaches, that it changes every
encoder's output, and that the adapter saves, reloads and merges into a plain FLAVA with the same outputs."""

import re

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open

from tests.models.flava.tester import image_inputs, text_inputs, tiny_config
from vlzoo.models.flava import FlavaForSequenceClassification, FlavaModel
from vlzoo.registry import get_family

TOWERS = ("image_output", "text_output", "multimodal_output")


def _targets() -> list[str]:
    return list(get_family("flava").lora_target_modules)


def _outputs(model, inputs) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        out = model(**inputs)
    return {tower: getattr(out, tower).last_hidden_state for tower in TOWERS}


def _base(config) -> FlavaModel:
    torch.manual_seed(0)
    return FlavaModel(config).eval()


def test_default_targets_are_every_encoder_query_and_value_projection():
    config = tiny_config()
    model = get_peft_model(_base(config), LoraConfig(r=2, target_modules=_targets()))
    adapted = sorted(
        name.removeprefix("base_model.model.").removesuffix(".lora_A")
        for name, _ in model.named_modules()
        if name.endswith(".lora_A")
    )
    layers = {
        "image_model": config.image_config.num_hidden_layers,
        "text_model": config.text_config.num_hidden_layers,
        "multimodal_model": config.multimodal_config.num_hidden_layers,
    }
    expected = sorted(
        f"{tower}.encoder.layers.{i}.self_attn.{projection}"
        for tower, count in layers.items()
        for i in range(count)
        for projection in ("q_proj", "v_proj")
    )
    assert adapted == expected
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(re.search(r"\.lora_[AB]\.", name) for name in trainable)


def test_adapter_changes_every_encoder_saves_reloads_and_merges(tmp_path):
    config = tiny_config()
    inputs = {**text_inputs(config), **image_inputs(config)}
    plain = _outputs(_base(config), inputs)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=_targets(), init_lora_weights=False)
    peft_model = get_peft_model(_base(config), lora).eval()
    adapted = _outputs(peft_model, inputs)
    for tower in TOWERS:  # each encoder has adapted attention, so each output moves
        assert (adapted[tower] - plain[tower]).abs().max() > 1e-3, tower
    peft_model.save_pretrained(tmp_path / "adapter")
    assert {p.name for p in (tmp_path / "adapter").iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}

    reloaded = PeftModel.from_pretrained(_base(config), tmp_path / "adapter").eval()
    for tower, value in _outputs(reloaded, inputs).items():
        torch.testing.assert_close(value, adapted[tower])
    merged = reloaded.merge_and_unload()
    assert type(merged) is FlavaModel and not any("lora_" in n for n, _ in merged.named_parameters())
    for tower, value in _outputs(merged, inputs).items():  # plain projections again: the fast path runs
        torch.testing.assert_close(value, adapted[tower], atol=1e-5, rtol=1e-5)
    merged.save_pretrained(tmp_path / "merged")
    with safe_open(tmp_path / "merged" / "model.safetensors", "pt") as f:
        assert not any("lora_" in key for key in f.keys())
    loaded = FlavaModel.from_pretrained(tmp_path / "merged").eval()
    for tower, value in _outputs(loaded, inputs).items():
        torch.testing.assert_close(value, adapted[tower], atol=1e-5, rtol=1e-5)


def test_lora_fine_tuning_of_the_vqa_head_changes_only_the_adapter_and_classifier(tmp_path):
    config = tiny_config()
    torch.manual_seed(0)
    model = FlavaForSequenceClassification(config)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=_targets(), modules_to_save=["classifier"])
    peft_model = get_peft_model(model, lora)
    inputs = {**text_inputs(config), **image_inputs(config)}
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for _ in range(3):
        optimizer.zero_grad()
        peft_model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
        optimizer.step()
    base_state = peft_model.get_base_model().state_dict()
    for name, tensor in base_state.items():
        original = name.replace(".base_layer", "").replace(".original_module", "")
        if "lora_" in name or "modules_to_save" in name or original not in before:
            continue
        assert torch.equal(tensor, before[original]), f"{name} changed outside the adapter"
    assert any("modules_to_save" in name for name in base_state)
    peft_model.eval()
    with torch.inference_mode():
        expected = peft_model(**inputs).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    torch.manual_seed(0)
    reloaded = PeftModel.from_pretrained(FlavaForSequenceClassification(config), tmp_path / "adapter").eval()
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(**inputs).logits, expected)
