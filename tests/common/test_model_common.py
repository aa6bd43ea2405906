"""The common model checks, run for every registered family, configuration and public model class."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors import safe_open
from transformers import AutoConfig

from .harness import Case, base_cases, cases

CASES = cases()
BASE = base_cases()


def _build(case: Case, attn: str = "eager", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = case.config(**overrides)
    config._attn_implementation = attn
    return case.model_class(config).eval(), config


@pytest.mark.parametrize("case", BASE, ids=[c.id for c in BASE])
def test_config_round_trip(case: Case, tmp_path):
    config = case.config()
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config)
    ignored = {"_name_or_path", "transformers_version"}
    a = {k: v for k, v in loaded.to_dict().items() if k not in ignored}
    b = {k: v for k, v in config.to_dict().items() if k not in ignored}
    assert a == b


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_save_load_safetensors_equal(case: Case, tmp_path):
    model, config = _build(case)
    inputs = case.inputs(config)
    with torch.no_grad():
        before = case.main_output(model(**inputs))
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = case.model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    with torch.no_grad():
        after = case.main_output(loaded(**inputs))
    torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_eager_matches_sdpa(case: Case):
    eager, config = _build(case, "eager")
    sdpa = copy.deepcopy(eager)
    sdpa.set_attn_implementation("sdpa")
    inputs = case.inputs(config)
    with torch.no_grad():
        a = case.main_output(eager(**inputs))
        b = case.main_output(sdpa(**inputs))
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gradient_checkpointing_gives_same_gradients(case: Case):
    plain, config = _build(case)
    checkpointed = copy.deepcopy(plain)
    checkpointed.activation_checkpointing_enable()
    assert checkpointed.is_gradient_checkpointing
    inputs = case.inputs(config)
    grads = []
    for model in (plain, checkpointed):
        model.train()
        model.zero_grad()
        case.main_output(model(**inputs)).pow(2).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hidden_states_and_attentions(case: Case):
    model, config = _build(case)
    inputs = case.inputs(config)
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True, output_attentions=True)
    towers = case.tester.num_layers(case.model_class, config)
    tower_outputs = case.tower_outputs(config, outputs)
    assert set(tower_outputs) == set(towers)
    for name, depth in towers.items():
        out = tower_outputs[name]
        assert len(out.hidden_states) == depth + 1, name
        assert len(out.attentions) == depth, name
        batch, length = out.hidden_states[0].shape[:2]
        assert out.attentions[0].shape[0] == batch and out.attentions[0].shape[-1] == length, name
    with torch.no_grad():
        plain = model(**inputs)
    for name, out in case.tower_outputs(config, plain).items():
        assert out.hidden_states is None and out.attentions is None, name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward_backward_reaches_every_trainable_parameter(case: Case):
    """Each class trains: its loss (with the tester's labels) or main output gives every parameter a gradient,
    except those the tester names with a reason (kept only so that the original checkpoint loads)."""
    model, config = _build(case)
    model.train()
    labels = case.labels(config)
    outputs = model(**case.inputs(config), **labels)
    if labels:
        assert outputs.loss is not None and outputs.loss.ndim == 0 and torch.isfinite(outputs.loss)
        objective = outputs.loss
    else:
        objective = case.main_output(outputs).pow(2).sum()
    objective.backward()
    unused = case.tester.unused_parameters(case.model_class, config)
    missing = [
        name
        for name, parameter in model.named_parameters()
        if parameter.requires_grad
        and (parameter.grad is None or not torch.isfinite(parameter.grad).all())
        and not any(name.startswith(prefix) for prefix in unused)
    ]
    assert not missing, f"no (finite) gradient for {missing}"
    stale = [p for p in unused if not any(n.startswith(p) for n, _ in model.named_parameters())]
    assert not stale, f"unused_parameters names prefixes that match no parameter: {stale}"


FAMILY_CASES = [c for c in BASE if c.config_name == next(iter(c.tester.configs))]  # one per family


@pytest.mark.parametrize("case", FAMILY_CASES, ids=[c.family.key for c in FAMILY_CASES])
def test_presets_build_on_meta_with_documented_parameter_count(case: Case):
    """Every released preset builds without allocating memory and has the parameter count the registry documents."""
    family = case.family
    assert family.presets, f"family {family.key} documents no presets"
    head = family.heads[family.default_task]
    for preset, documented in family.presets.items():
        with torch.device("meta"):
            model = head(case.tester.build_preset(preset))
        assert all(p.device.type == "meta" for p in model.parameters())
        counted = sum(p.numel() for p in model.parameters())
        assert counted == documented, f"{family.key} preset {preset!r}: {counted} parameters, documented {documented}"


def _capability_cases(capability: str) -> list[Case]:
    return [c for c in CASES if capability in c.family.capabilities]


def needs(capability: str):
    """Marks a check as applying only to families that declare `capability` in the registry."""

    def mark(check):
        check.capability = capability
        return check

    return mark


DUAL = [
    c
    for c in _capability_cases("dual_encoder")
    if c.model_class is c.family.auto_models.get("AutoModelForZeroShotImageClassification")
]


@pytest.mark.parametrize("case", DUAL, ids=[c.id for c in DUAL])
@needs("dual_encoder")
def test_dual_encoder_contract(case: Case):
    """CLIP conventions: features from each tower alone equal the joint forward's embeddings and logits."""
    model, config = _build(case)
    inputs = case.inputs(config)
    text = {k: v for k, v in inputs.items() if k != "pixel_values"}
    with torch.no_grad():
        out = model(**inputs)
        image_features = model.get_image_features(pixel_values=inputs["pixel_values"])
        text_features = model.get_text_features(**text)
    image_features = getattr(image_features, "pooler_output", image_features)
    text_features = getattr(text_features, "pooler_output", text_features)
    n_images, n_texts = inputs["pixel_values"].shape[0], text["input_ids"].shape[0]
    assert out.logits_per_image.shape == (n_images, n_texts)
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
    normalise = torch.nn.functional.normalize
    torch.testing.assert_close(normalise(image_features, dim=-1), normalise(out.image_embeds, dim=-1))
    torch.testing.assert_close(normalise(text_features, dim=-1), normalise(out.text_embeds, dim=-1))


FUSION = [
    c
    for c in _capability_cases("fusion_encoder")
    if {"pixel_values", "input_ids"} <= set(c.inputs(c.config(), batch=1))
]


@pytest.mark.parametrize("case", FUSION, ids=[c.id for c in FUSION])
@needs("fusion_encoder")
def test_fusion_encoder_output_depends_on_both_modalities(case: Case):
    """A fused head reads both inputs: changing only the image, or only the text, changes its output."""
    model, config = _build(case)
    inputs = case.inputs(config)
    ids = inputs["input_ids"]
    other_text = {**inputs, "input_ids": torch.where(ids > 3, (ids + 1) % config.get_text_config().vocab_size, ids)}
    other_image = {**inputs, "pixel_values": inputs["pixel_values"].flip(-1) + 0.5}
    with torch.no_grad():
        base = case.main_output(model(**inputs))
        for name, changed in (("text", other_text), ("image", other_image)):
            assert not torch.allclose(case.main_output(model(**changed)), base), f"output ignores the {name}"


GENERATION = [c for c in _capability_cases("generation") if hasattr(c.model_class, "generate")]


@pytest.mark.parametrize("case", GENERATION, ids=[c.id for c in GENERATION])
@needs("generation")
def test_generation_head_generates(case: Case):
    model, config = _build(case)
    inputs = case.inputs(config, batch=2)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert generated.ndim == 2 and generated.shape[0] == 2 and generated.dtype == torch.long


BOXES = [c for c in _capability_cases("boxes") if c.model_class in c.family.heads.values()]


@pytest.mark.parametrize("case", BOXES, ids=[c.id for c in BOXES])
@needs("boxes")
def test_box_heads_predict_normalised_boxes(case: Case):
    model, config = _build(case)
    inputs = case.inputs(config)
    with torch.no_grad():
        outputs = model(**inputs)
    if getattr(outputs, "pred_boxes", None) is None:
        pytest.skip(reason=f"{case.model_class.__name__} is not the family's box head")
    boxes = outputs.pred_boxes
    assert boxes.shape == (inputs["pixel_values"].shape[0], 4)
    assert ((boxes >= 0) & (boxes <= 1)).all()


@pytest.mark.parametrize("case", BASE, ids=[c.id for c in BASE])
def test_every_auto_class_loads_its_model(case: Case, tmp_path):
    """Each Auto class the family registers (its own and the pipelines' head Auto classes) loads the right class."""
    import transformers

    from vlzoo.pipelines.task_heads import HEAD_AUTO_CLASSES

    pairs = dict(case.family.auto_models)
    for task, auto in HEAD_AUTO_CLASSES.items():
        if task in case.family.heads:
            pairs[auto.__name__] = case.family.heads[task]
    for auto_name, model_class in pairs.items():
        torch.manual_seed(0)
        folder = tmp_path / auto_name
        model_class(case.config()).save_pretrained(folder)
        auto = getattr(transformers, auto_name, None)
        if auto is None:
            import vlzoo.pipelines.task_heads as task_heads

            auto = getattr(task_heads, auto_name)
        assert type(auto.from_pretrained(folder)) is model_class, auto_name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_return_dict_false_gives_tuple(case: Case):
    model, config = _build(case)
    inputs = case.inputs(config)
    with torch.no_grad():
        as_dict = model(**inputs)
        as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], as_dict[0])


@pytest.mark.parametrize("case", BASE, ids=[c.id for c in BASE])
def test_peft_lora_save_reload_merge(case: Case, tmp_path):
    model, config = _build(case)
    inputs = case.inputs(config)
    targets = list(case.family.lora_target_modules)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)
    peft_model.eval()
    with torch.no_grad():
        expected = case.main_output(peft_model(**inputs))
    peft_model.save_pretrained(tmp_path / "adapter")

    base, _ = _build(case)
    with torch.no_grad():
        untouched = case.main_output(base(**inputs))
    assert not torch.allclose(untouched, expected), "the random LoRA weights changed nothing"
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(case.main_output(reloaded(**inputs)), expected)
    merged = reloaded.merge_and_unload()
    assert type(merged) is case.model_class
    assert not any("lora_" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(case.main_output(merged(**inputs)), expected)
    merged.save_pretrained(tmp_path / "merged")
    with safe_open(tmp_path / "merged" / "model.safetensors", "pt") as f:
        assert not any("lora_" in k for k in f.keys())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_lora_trained_in_train_mode_reloads_exactly(case: Case, tmp_path):
    """Adapter training in train mode must leave nothing outside the adapter changed (BatchNorm statistics...)."""
    model, config = _build(case)
    model.save_pretrained(tmp_path / "base")
    inputs = case.inputs(config)
    with torch.no_grad():
        untouched = case.main_output(model(**inputs))
    frozen_state = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=list(case.family.lora_target_modules))
    )
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    for step in range(3):
        batch = case.inputs(config, batch=4) if step % 2 else inputs
        optimizer.zero_grad()
        case.main_output(peft_model(**batch)).pow(2).mean().backward()
        optimizer.step()
    peft_model.eval()
    with torch.no_grad():
        trained = case.main_output(peft_model(**inputs))
    assert not torch.allclose(trained, untouched), "three optimizer steps of LoRA training changed nothing"
    peft_model.save_pretrained(tmp_path / "adapter")
    changed = [
        name
        for name, tensor in peft_model.get_base_model().state_dict().items()
        if "lora_" not in name
        and name.replace(".base_layer", "") in frozen_state
        and not torch.equal(tensor, frozen_state[name.replace(".base_layer", "")])
    ]

    base = case.model_class.from_pretrained(tmp_path / "base", attn_implementation="eager")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        again = case.main_output(reloaded(**inputs))
    torch.testing.assert_close(
        again,
        trained,
        rtol=0,
        atol=1e-5,
        msg=lambda m: f"{m}\nstate outside the adapter changed in training: {changed}",
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_device_map_with_disk_offload_matches_normal_load(case: Case, tmp_path):
    """`device_map="auto"` with a CPU budget below the model size: part on CPU, part offloaded to disk."""
    model, config = _build(case)
    model.save_pretrained(tmp_path / "model")
    inputs = case.inputs(config)
    normal = case.model_class.from_pretrained(tmp_path / "model", attn_implementation="eager").eval()
    with torch.no_grad():
        expected = case.main_output(normal(**inputs))
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    placements = []
    for fraction in (0.7, 0.5, 0.9):  # the first budget that gives a mixed map
        offloaded = case.model_class.from_pretrained(
            tmp_path / "model",
            attn_implementation="eager",
            device_map="auto",
            max_memory={"cpu": int(size * fraction)},
            offload_folder=tmp_path / f"offload-{fraction}",
        ).eval()
        placements.append(offloaded.hf_device_map)
        if {"cpu", "disk"} <= set(offloaded.hf_device_map.values()):
            break
    else:
        pytest.fail(f"no CPU budget gave a map with both cpu and disk entries: {placements}")
    with torch.no_grad():
        actual = case.main_output(offloaded(**inputs))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


PIXEL_CASES = [c for c in CASES if "pixel_values" in c.inputs(c.config(), batch=1)]


@pytest.mark.parametrize("case", PIXEL_CASES, ids=[c.id for c in PIXEL_CASES])
def test_bfloat16_model_takes_float32_pixel_values(case: Case):
    model, config = _build(case)
    model.to(torch.bfloat16)
    inputs = case.inputs(config)
    assert inputs["pixel_values"].dtype == torch.float32
    as_bf16 = {**inputs, "pixel_values": inputs["pixel_values"].to(torch.bfloat16)}
    with torch.no_grad():
        actual = case.main_output(model(**inputs))
        expected = case.main_output(model(**as_bf16))
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_unknown_keyword_argument_raises(case: Case):
    model, config = _build(case)
    with pytest.raises(TypeError, match="foo"):
        model(**case.inputs(config), foo=1)


@pytest.mark.parametrize("family", sorted({c.family.key for c in BASE}))
def test_default_lora_targets_exist(family: str):
    case = next(c for c in BASE if c.family.key == family)
    model, _ = _build(case)
    names = [n for n, _ in model.named_modules()]
    for target in case.family.lora_target_modules:
        assert any(n.endswith(target) for n in names), f"LoRA target {target!r} matches no module"


@pytest.mark.parametrize("case", BASE, ids=[c.id for c in BASE])
def test_processor_save_load(case: Case, tmp_path):
    processor_class = case.family.processor_class
    if processor_class is None:
        pytest.fail(f"family {case.family.key} declares no processor")
    processor = case.tester.tiny_processor()
    processor.save_pretrained(tmp_path)
    case.config().save_pretrained(tmp_path)
    from transformers import AutoProcessor

    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is processor_class
    sample = case.tester.processor_sample()
    a, b = processor(**sample), loaded(**sample)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
