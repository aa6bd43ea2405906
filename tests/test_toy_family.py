"""A family added through the registry alone: a tiny dual encoder defined here, with a converter from a tiny
original-format checkpoint and a demo, reaches `vlzoo convert`, `vlzoo train`, `vlzoo eval`, `vlzoo demo`, the
pipelines, the top-level `vlzoo` namespace and the common model harness without any other edit, and is gone again
once unregistered.

This module is also the family's tester for the harness (`TESTER`, a `FamilyTester`), as
`tests/models/<family>/tester.py` is for a built-in family.
"""

import inspect
import json
import re
import sys
from dataclasses import dataclass

import pytest
import safetensors.torch
import torch
from torch import nn
from transformers import AutoModel, PreTrainedConfig, PreTrainedModel, pipeline
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput, can_return_tuple

import vlzoo
from tests.common.family_tester import FamilyTester
from vlzoo.cli import main
from vlzoo.conversion import FamilyConverter, split_qkv, transpose
from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.mlp import FeedForward
from vlzoo.losses.contrastive import contrastive_loss
from vlzoo.registry import DemoSpec, Family, families, register_family, unregister_family

KEY = "toy"
TESTER_MODULE = f"tests.models.{KEY}.tester"  # where the common harness looks for a family's tester
VOCAB_SIZE = 1000  # the CLIP BPE cut to 486 merges: 512 byte tokens + 486 merges + 2 special tokens
IMAGE_SIZE = 32
TINY_PARAMETERS = 37_777  # the documented size of the "tiny" preset
SHAPES = {"num_train": 8, "num_validation": 4, "image_size": IMAGE_SIZE}


# ----- the family: a config, a dual-encoder model built from vlzoo.layers -----


class ToyConfig(PreTrainedConfig):
    """A patch-embedding image tower and a token text tower of `num_hidden_layers` pre-LN blocks each."""

    model_type = "vlzoo_toy"

    def __init__(
        self,
        vocab_size: int = VOCAB_SIZE,
        hidden_size: int = 16,
        intermediate_size: int = 24,
        num_hidden_layers: int = 2,
        num_attention_heads: int = 2,
        image_size: int = IMAGE_SIZE,
        patch_size: int = 16,
        max_position_embeddings: int = 77,
        projection_dim: int = 8,
        logit_scale_init_value: float = 2.6592,
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.image_size = image_size
        self.patch_size = patch_size
        self.max_position_embeddings = max_position_embeddings
        self.projection_dim = projection_dim
        self.logit_scale_init_value = logit_scale_init_value
        super().__init__(**kwargs)


@dataclass
class ToyOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self):
        towers = ("text_model_output", "vision_model_output")
        return tuple(self[k].to_tuple() if k in towers else self[k] for k in self.keys())


class ToyLayer(GradientCheckpointingLayer):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.layer_norm1 = nn.LayerNorm(config.hidden_size)
        self.self_attn = MultiHeadAttention(config.hidden_size, config.num_attention_heads, config=config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size)
        self.mlp = FeedForward(config.hidden_size, config.intermediate_size, "quick_gelu")

    def forward(self, hidden_states, attention_mask=None, output_attentions=False):
        attended, attention = self.self_attn(
            self.layer_norm1(hidden_states), attention_mask, output_attentions=output_attentions
        )
        hidden_states = hidden_states + attended
        return hidden_states + self.mlp(self.layer_norm2(hidden_states)), attention


class ToyTower(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.layers = nn.ModuleList(ToyLayer(config) for _ in range(config.num_hidden_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)

    def forward(self, hidden_states, attention_mask, pool_index, output_hidden_states, output_attentions):
        states, attentions = [hidden_states], []
        for layer in self.layers:
            hidden_states, attention = layer(hidden_states, attention_mask, output_attentions)
            states.append(hidden_states)
            attentions.append(attention)
        pooled = self.final_norm(hidden_states[torch.arange(hidden_states.shape[0]), pool_index])
        return BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class ToyModel(PreTrainedModel):
    """Scores every image against every text; pools the image at its class token, a text at its largest id."""

    config_class = ToyConfig
    base_model_prefix = "toy"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["ToyLayer"]

    def __init__(self, config: ToyConfig):
        super().__init__(config)
        grid = config.image_size // config.patch_size
        self.patch = nn.Conv2d(3, config.hidden_size, config.patch_size, config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(config.hidden_size))
        self.vision_position = nn.Parameter(torch.zeros(1 + grid * grid, config.hidden_size))
        self.token_embedding = nn.Embedding(config.vocab_size, config.hidden_size)
        self.text_position = nn.Parameter(torch.zeros(config.max_position_embeddings, config.hidden_size))
        self.vision_model = ToyTower(config)
        self.text_model = ToyTower(config)
        self.visual_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.text_projection = nn.Linear(config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, ToyModel):
            for table in (module.class_embedding, module.vision_position, module.text_position):
                nn.init.normal_(table, std=0.02)

    def _flags(self, hidden, attentions):
        return bool(hidden) or self.config.output_hidden_states, bool(attentions) or self.config.output_attentions

    def _image(self, pixel_values, hidden, attentions):
        tokens = self.patch(pixel_values.to(self.patch.weight.dtype)).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.vision_position
        pool = torch.zeros(tokens.shape[0], dtype=torch.long, device=tokens.device)
        out = self.vision_model(tokens, None, pool, hidden, attentions)
        return out, self.visual_projection(out.pooler_output)

    def _text(self, input_ids, attention_mask, hidden, attentions):
        tokens = self.token_embedding(input_ids) + self.text_position[: input_ids.shape[1]]
        mask = None if attention_mask is None else key_padding_attention_mask(attention_mask, dtype=tokens.dtype)
        out = self.text_model(tokens, mask, input_ids.argmax(dim=-1), hidden, attentions)
        return out, self.text_projection(out.pooler_output)

    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._image(pixel_values, False, False)[1]

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._text(input_ids, attention_mask, False, False)[1]

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> ToyOutput:
        hidden, attentions = self._flags(output_hidden_states, output_attentions)
        vision, image = self._image(pixel_values, hidden, attentions)
        text_out, text = self._text(input_ids, attention_mask, hidden, attentions)
        image_embeds = image / image.norm(dim=-1, keepdim=True)
        text_embeds = text / text.norm(dim=-1, keepdim=True)
        scale = self.logit_scale.exp()
        logits_per_image = scale * image_embeds @ text_embeds.t()
        return ToyOutput(
            loss=contrastive_loss(image_embeds, text_embeds, scale) if return_loss else None,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_out,
            vision_model_output=vision,
        )


# ----- its converter: a tiny "released" format (fused attention, [in, out] projections, heads in args) -----

_TOWERS = (("visual.blocks", "vision_model"), ("blocks", "text_model"))


class ToyConverter(FamilyConverter):
    family = "Toy"
    required_keys = (r"visual\.conv\.weight", r"token_embedding\.weight", r"logit_scale")

    def infer_config(self, state_dict, *, original_config, variant, extra):
        width, _, patch, _ = state_dict["visual.conv.weight"].shape
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        vocab, _ = state_dict["token_embedding.weight"].shape
        return ToyConfig(
            vocab_size=vocab,
            hidden_size=width,
            intermediate_size=state_dict["blocks.0.mlp.c_fc.weight"].shape[0],
            num_hidden_layers=1 + max(int(k.split(".")[1]) for k in state_dict if k.startswith("blocks.")),
            num_attention_heads=extra["args"]["heads"],  # not in the shapes: the checkpoint's training args
            image_size=grid * patch,
            patch_size=patch,
            max_position_embeddings=state_dict["positional_embedding"].shape[0],
            projection_dim=state_dict["visual.proj"].shape[1],
        )

    def key_map(self, config):
        rules = [
            (r"visual\.conv\.weight", "patch.weight"),
            (r"visual\.class_embedding", "class_embedding"),
            (r"visual\.positional_embedding", "vision_position"),
            (r"token_embedding\.weight", "token_embedding.weight"),
            (r"positional_embedding", "text_position"),
            (r"visual\.ln_post\.(weight|bias)", r"vision_model.final_norm.\1"),
            (r"ln_final\.(weight|bias)", r"text_model.final_norm.\1"),
            (r"visual\.proj", "visual_projection.weight"),
            (r"text_projection", "text_projection.weight"),
            (r"logit_scale", "logit_scale"),
        ]
        for source, target in _TOWERS:
            prefix = re.escape(source)
            rules += [
                (rf"{prefix}\.(\d+)\.ln_(1|2)\.(weight|bias)", rf"{target}.layers.\1.layer_norm\2.\3"),
                (rf"{prefix}\.(\d+)\.attn\.in_proj_(weight|bias)", rf"{target}.layers.\1.self_attn.in_proj.\2"),
                (rf"{prefix}\.(\d+)\.attn\.out_proj\.(weight|bias)", rf"{target}.layers.\1.self_attn.out_proj.\2"),
                (rf"{prefix}\.(\d+)\.mlp\.c_fc\.(weight|bias)", rf"{target}.layers.\1.mlp.fc1.\2"),
                (rf"{prefix}\.(\d+)\.mlp\.c_proj\.(weight|bias)", rf"{target}.layers.\1.mlp.fc2.\2"),
            ]
        return rules

    def transforms(self, config):
        return {r".*\.in_proj\.(weight|bias)": split_qkv(), r"(visual|text)_projection\.weight": transpose}

    def build_model(self, config):
        return ToyModel(config)

    def build_processor(self, config):
        return tiny_processor(config.image_size)

    def parity_outputs(self, model, inputs):
        out = model(**inputs)
        return {"logits_per_image": out.logits_per_image}


def to_original(model: ToyModel) -> dict[str, torch.Tensor]:
    """The model's weights under the released names, written out by hand (the inverse of the key map)."""
    sd = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    original = {
        "visual.conv.weight": sd["patch.weight"],
        "visual.class_embedding": sd["class_embedding"],
        "visual.positional_embedding": sd["vision_position"],
        "token_embedding.weight": sd["token_embedding.weight"],
        "positional_embedding": sd["text_position"],
        "visual.ln_post.weight": sd["vision_model.final_norm.weight"],
        "visual.ln_post.bias": sd["vision_model.final_norm.bias"],
        "ln_final.weight": sd["text_model.final_norm.weight"],
        "ln_final.bias": sd["text_model.final_norm.bias"],
        "visual.proj": sd["visual_projection.weight"].t().contiguous(),
        "text_projection": sd["text_projection.weight"].t().contiguous(),
        "logit_scale": sd["logit_scale"],
    }
    for source, target in _TOWERS:
        for i in range(model.config.num_hidden_layers):
            layer = f"{target}.layers.{i}"
            for kind in ("weight", "bias"):
                original[f"{source}.{i}.ln_1.{kind}"] = sd[f"{layer}.layer_norm1.{kind}"]
                original[f"{source}.{i}.ln_2.{kind}"] = sd[f"{layer}.layer_norm2.{kind}"]
                original[f"{source}.{i}.attn.in_proj_{kind}"] = torch.cat(
                    [sd[f"{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                )
                original[f"{source}.{i}.attn.out_proj.{kind}"] = sd[f"{layer}.self_attn.out_proj.{kind}"]
                original[f"{source}.{i}.mlp.c_fc.{kind}"] = sd[f"{layer}.mlp.fc1.{kind}"]
                original[f"{source}.{i}.mlp.c_proj.{kind}"] = sd[f"{layer}.mlp.fc2.{kind}"]
    return original


# ----- the tester interface of the common harness -----


def tiny_config(**overrides) -> ToyConfig:
    return ToyConfig(**overrides)


CONFIGS = {"toy": tiny_config}


def inputs_for(model_class: type, config: ToyConfig, batch: int = 3) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    length = 9
    ids = torch.randint(1, config.vocab_size - 2, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    for row in range(batch):
        end = 4 + row % (length - 4)
        ids[row, end] = config.vocab_size - 1  # the end token, the largest id
        mask[row, end + 1 :] = 0
    pixels = torch.randn(batch, 3, config.image_size, config.image_size, generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def main_output(model_class: type, outputs) -> torch.Tensor:
    return torch.cat(
        [outputs.logits_per_image.flatten(), outputs.image_embeds.flatten(), outputs.text_embeds.flatten()]
    )


def num_layers(model_class: type, config: ToyConfig) -> dict[str, int]:
    return {"vision": config.num_hidden_layers, "text": config.num_hidden_layers}


def tiny_processor(image_size: int = IMAGE_SIZE):
    """MS-CLIP's preprocessing reused: a new family may share another's processor classes."""
    from vlzoo.models.ms_clip import MsClipImageProcessor, MsClipProcessor, MsClipTokenizer
    from vlzoo.processing.clip_bpe import clip_bpe_vocab_and_merges

    tokenizer = MsClipTokenizer(*clip_bpe_vocab_and_merges(num_merges=VOCAB_SIZE - 514))
    return MsClipProcessor(
        image_processor=MsClipImageProcessor(size=image_size, crop_size=image_size), tokenizer=tokenizer
    )


def processor_sample() -> dict:
    from PIL import Image

    return {"text": ["a red square", "two blue stars"], "images": [Image.new("RGB", (40, 30), (200, 10, 10))] * 2}


class ToyTester(FamilyTester):
    family_key = KEY
    configs = CONFIGS

    def inputs(self, model_class, config, batch=3):
        return inputs_for(model_class, config, batch)

    def main_output(self, model_class, outputs):
        return main_output(model_class, outputs)

    def num_layers(self, model_class, config):
        return num_layers(model_class, config)

    def tiny_processor(self):
        return tiny_processor()

    def processor_sample(self):
        return processor_sample()


TESTER = ToyTester()


# ----- the registry entry -----


def _zero_shot_score(model_dir, test):
    from vlzoo.evaluation.zero_shot_shapes import zero_shot_demo_score

    return zero_shot_demo_score(model_dir, test)


def _chance(test, train) -> dict[str, float]:
    from vlzoo.data import class_names

    return {"chance": 1.0 / len(class_names())}


def toy_family() -> Family:
    from vlzoo.models.ms_clip import MsClipImageProcessor, MsClipProcessor, MsClipTokenizer

    return Family(
        key=KEY,
        name="Toy",
        config_class=ToyConfig,
        heads={"contrastive": ToyModel},
        auto_models={"AutoModel": ToyModel, "AutoModelForZeroShotImageClassification": ToyModel},
        image_processor_class=MsClipImageProcessor,
        tokenizer_class=MsClipTokenizer,
        processor_class=MsClipProcessor,
        pipelines=("zero-shot-image-classification", "image-text-retrieval"),
        exports=("ToyConfig", "ToyModel"),
        package=__name__,
        capabilities=frozenset({"dual_encoder"}),
        converter=ToyConverter,
        demo=DemoSpec(
            description="a toy dual encoder vs a narrower one",
            task="contrastive",
            models={"toy": lambda: tiny_config(), "narrow": lambda: tiny_config(hidden_size=8, intermediate_size=12)},
            processor=tiny_processor,
            evaluate=_zero_shot_score,
            summary="zero-shot accuracy: toy={score[toy]:.3f} narrow={score[narrow]:.3f} chance={chance:.3f} "
            "params: toy={parameters[toy]} narrow={parameters[narrow]}",
            references=_chance,
            data={"num_validation": 4, "image_size": IMAGE_SIZE},
            training=lambda max_steps: {"learning_rate": 1e-3, "progress_bar": False},
            max_steps=2,
            batch_size=4,
            num_train=8,
            num_test=4,
        ),
        lora_target_modules=("q_proj", "v_proj"),
        default_preset="tiny",
        presets={"tiny": TINY_PARAMETERS},
        config_builder=lambda preset, **overrides: tiny_config(**overrides),
        processor_builder=lambda config: tiny_processor(config.image_size),
    )


@pytest.fixture
def toy():
    """The toy family, registered for one test (and visible to the harness, with this module as its tester)."""
    family = toy_family()
    register_family(family)
    sys.modules[TESTER_MODULE] = sys.modules[__name__]
    try:
        yield family
    finally:
        del sys.modules[TESTER_MODULE]
        unregister_family(KEY)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VLZOO_CACHE", str(tmp_path / "cache"))


# ----- the tests -----


def test_the_namespace_and_the_family_list_pick_it_up(toy):
    assert toy in families() and vlzoo.get_family(KEY) is toy
    assert vlzoo.ToyModel is ToyModel and vlzoo.ToyConfig is ToyConfig
    assert {"ToyConfig", "ToyModel"} <= set(vlzoo.__all__) and "ToyModel" in dir(vlzoo)
    namespace: dict = {}
    exec("from vlzoo import *", namespace)
    assert namespace["ToyModel"] is ToyModel and namespace["MsClipModel"] is vlzoo.MsClipModel


def test_convert_reads_a_released_checkpoint_through_the_cli(toy, tmp_path, capsys):
    torch.manual_seed(0)
    config = tiny_config(num_attention_heads=4)
    reference = ToyModel(config).eval()
    torch.save({"model": to_original(reference), "args": {"heads": 4, "epochs": 90}}, tmp_path / "toy.pth")
    inputs = inputs_for(ToyModel, config)
    with torch.no_grad():
        expected = reference(**inputs).logits_per_image
    io = {f"input.{name}": tensor for name, tensor in inputs.items()}
    safetensors.torch.save_file({**io, "output.logits_per_image": expected}, str(tmp_path / "io.safetensors"))

    assert main(["convert", "toy", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: vlzoo convert toy")
    argv = ["--checkpoint", str(tmp_path / "toy.pth"), "--output-dir", str(tmp_path / "out")]
    assert main(["convert", KEY, *argv, "--verify-against", str(tmp_path / "io.safetensors")]) == 0
    converted = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(converted) is ToyModel and converted.config.num_attention_heads == 4
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[name], tensor, rtol=0, atol=0, msg=name)
    assert json.loads((tmp_path / "out" / "parity.json").read_text())["passed"]


def test_train_eval_and_pipelines_use_the_family(toy, tmp_path, cache, capsys):
    from vlzoo.evaluation.zero_shot_shapes import evaluate_zero_shot_on_shapes

    run = tmp_path / "run"
    overrides = [f"data.{key}={value}" for key, value in SHAPES.items()]
    argv = ["train", "model.family=toy", "model.config.hidden_size=12", f"training.output_dir={run}"]
    argv += ["training.max_steps=2", "training.per_device_batch_size=4", "training.progress_bar=false", *overrides]
    assert main(argv) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    model = AutoModel.from_pretrained(run)
    assert type(model) is ToyModel and model.config.hidden_size == 12

    assert main(["eval", str(run), "--num-test", "4", "--image-size", str(IMAGE_SIZE)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    accuracy = evaluate_zero_shot_on_shapes(run, num_test=4, image_size=IMAGE_SIZE)
    assert line == f"zero-shot accuracy on shapes/test (4 images): {accuracy:.4f}"
    assert main(["eval", str(run), "--task", "vqa"]) == 1
    assert "family 'toy' has no head for task 'vqa'" in capsys.readouterr().err

    retrieval = pipeline("image-text-retrieval", model=str(run))
    assert type(retrieval.model) is ToyModel
    from PIL import Image

    images = [Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), color) for color in ("red", "green", "blue")]
    ranked = retrieval(images=images, texts="a green square")
    processor = tiny_processor()
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image = torch.nn.functional.normalize(retrieval.model.get_image_features(pixels), dim=-1)
        text = retrieval.model.get_text_features(**processor(text=["a green square"], return_tensors="pt"))
        text = torch.nn.functional.normalize(text, dim=-1)
    expected = (image @ text[0]).tolist()
    assert ranked["indices"] == sorted(range(3), key=lambda i: -expected[i])
    torch.testing.assert_close(torch.tensor(ranked["scores"]), torch.tensor(sorted(expected, reverse=True)))
    classifier = pipeline("zero-shot-image-classification", model=str(run))
    assert type(classifier.model) is ToyModel


def test_demo_runs_the_family_spec(toy, tmp_path, cache, capsys):
    from vlzoo.evaluation.zero_shot_shapes import evaluate_zero_shot_on_shapes

    assert main(["demo", "--help"]) == 0
    assert "toy (Toy): a toy dual encoder vs a narrower one" in capsys.readouterr().out
    out = tmp_path / "demo"
    assert main(["demo", KEY, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0] == f"saved: {out}/toy, {out}/narrow"
    results = json.loads((out / "results.json").read_text())
    assert results["max_steps"] == 2 and results["num_test"] == 4 and results["num_train"] == 8
    for name in ("toy", "narrow"):
        model = AutoModel.from_pretrained(out / name)
        assert results["parameters"][name] == sum(p.numel() for p in model.parameters())
        accuracy = evaluate_zero_shot_on_shapes(out / name, num_test=4, image_size=IMAGE_SIZE)
        assert results["accuracy"][name] == pytest.approx(accuracy)
    assert results["parameters"]["toy"] > results["parameters"]["narrow"]
    assert printed[-1] == (
        f"zero-shot accuracy: toy={results['accuracy']['toy']:.3f} narrow={results['accuracy']['narrow']:.3f} "
        f"chance={results['chance']:.3f} params: toy={results['parameters']['toy']} "
        f"narrow={results['parameters']['narrow']}"
    )


def _common_checks() -> list[str]:
    """Every per-case check of the harness that applies to a dual encoder (capability checks by declaration)."""
    from tests.common import test_model_common

    names = []
    for name, check in vars(test_model_common).items():
        if name.startswith("test_") and set(inspect.signature(check).parameters) <= {"case", "tmp_path"}:
            if "case" in inspect.signature(check).parameters:
                if getattr(check, "capability", "dual_encoder") == "dual_encoder":
                    names.append(name)
    return names


def test_the_harness_selects_capability_checks_from_the_registry():
    checks = _common_checks()
    assert "test_dual_encoder_contract" in checks
    assert "test_forward_backward_reaches_every_trainable_parameter" in checks
    assert "test_presets_build_on_meta_with_documented_parameter_count" in checks
    assert not {"test_box_heads_predict_normalised_boxes", "test_generation_head_generates"} & set(checks)


@pytest.mark.parametrize("check", _common_checks())
def test_the_common_harness_runs_on_the_family(toy, check, tmp_path):
    from tests.common import harness, test_model_common

    cases = [case for case in harness.cases() if case.family is toy]
    assert [case.model_class for case in cases] == [ToyModel]
    function = getattr(test_model_common, check)
    for case in cases:
        kwargs = {"case": case}
        if "tmp_path" in inspect.signature(function).parameters:
            kwargs["tmp_path"] = tmp_path / case.id
            kwargs["tmp_path"].mkdir()
        function(**kwargs)


def test_unregistering_removes_every_trace(tmp_path):
    from tests.common import harness

    family = toy_family()
    register_family(family)
    ToyModel(tiny_config()).save_pretrained(tmp_path / "model")
    assert type(AutoModel.from_pretrained(tmp_path / "model")) is ToyModel
    unregister_family(KEY)
    assert KEY not in [f.key for f in families()] and "ToyModel" not in vlzoo.__all__
    with pytest.raises(AttributeError):
        _ = vlzoo.ToyModel
    with pytest.raises(ValueError):
        AutoModel.from_pretrained(tmp_path / "model")
    assert all(case.family.key != KEY for case in harness.cases())
    assert main(["convert", KEY]) == 2


def test_the_harness_catches_a_parameter_without_gradient_and_a_wrong_parameter_count(toy, monkeypatch):
    from tests.common import harness, test_model_common

    case = next(case for case in harness.cases() if case.family is toy)
    original_init = ToyModel.__init__

    def with_dead_weight(self, config):
        original_init(self, config)
        self.dead = nn.Linear(2, 2)  # never used in forward

    monkeypatch.setattr(ToyModel, "__init__", with_dead_weight)
    with pytest.raises(AssertionError, match="dead.weight"):
        test_model_common.test_forward_backward_reaches_every_trainable_parameter(case)
    with pytest.raises(AssertionError, match="documented 37777"):
        test_model_common.test_presets_build_on_meta_with_documented_parameter_count(case)
