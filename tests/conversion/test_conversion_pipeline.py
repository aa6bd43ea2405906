"""The full conversion path on a tiny family: success, every refusal, atomic writes and the command line."""

import argparse
import json
import os
from pathlib import Path

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from vlzoo.conversion import (
    ConversionError,
    FamilyConverter,
    ParityError,
    convert_checkpoint,
    run_cli,
    split_transform,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WIDTH, VOCAB, LAYERS = 6, 11, 2


# ----- the tiny family: a config, a model with a tied head, and its converter -----


@strict
class TinyConfig(PreTrainedConfig):
    """A two-layer single-head attention stack with an output head tied to the embedding."""

    model_type = "vlzoo_conversion_test_tiny"
    vocab_size: int = 11
    hidden_size: int = 6
    num_layers: int = 2
    layer_norm_eps: float = 1e-5
    tie_word_embeddings: bool = True


class TinyAttention(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(width, width)
        self.k_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.q_proj(x) @ self.k_proj(x).transpose(-1, -2) / x.shape[-1] ** 0.5
        return self.out_proj(scores.softmax(-1) @ self.v_proj(x))


class TinyLayer(nn.Module):
    def __init__(self, config: TinyConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attn = TinyAttention(config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x))


class TinyModel(PreTrainedModel):
    config: TinyConfig
    base_model_prefix = "tiny"
    _tied_weights_keys = {"lm_head.weight": "embed.weight"}

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(TinyLayer(config) for _ in range(config.num_layers))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.embed(input_ids)
        for layer in self.layers:
            hidden = layer(hidden)
        return {"hidden_states": hidden, "logits": self.lm_head(hidden)}


class TinyConverter(FamilyConverter):
    family = "Tiny"
    variants = ("tiny-6",)
    required_keys = (r"tok\.weight", r"blocks\.\d+\.attn\.in_proj_weight")

    def infer_config(self, state_dict, *, original_config, variant, extra):
        vocab, width = state_dict["tok.weight"].shape
        layers = 1 + max(int(key.split(".")[1]) for key in state_dict if key.startswith("blocks."))
        eps = float(original_config["ln_eps"]) if original_config else 1e-5
        return TinyConfig(vocab_size=vocab, hidden_size=width, num_layers=layers, layer_norm_eps=eps)

    def key_map(self, config):
        return [
            (r"tok\.weight", r"embed.weight"),
            (r"blocks\.(\d+)\.ln\.(weight|bias)", r"layers.\1.norm.\2"),
            (r"blocks\.(\d+)\.attn\.in_proj_(weight|bias)", r"layers.\1.attn.in_proj.\2"),
            (r"blocks\.(\d+)\.attn\.out\.(weight|bias)", r"layers.\1.attn.out_proj.\2"),
            (r"blocks\.(\d+)\.attn\.mask", None),
        ]

    def transforms(self, config):
        return {r".*\.in_proj\.(weight|bias)": split_transform("in_proj", ("q_proj", "k_proj", "v_proj"))}

    def build_model(self, config):
        return TinyModel(config)

    def parity_outputs(self, model, inputs):
        return model(inputs["input_ids"])

    def align_expected(self, name, expected, inputs):
        # The reference also stores a training loss the converted model does not compute.
        return None if name == "loss" else expected


class LightningTinyConverter(TinyConverter):
    strip_prefixes = ("model.",)


class TrainingCallback:
    """A non-allow-listed object stored next to the weights, as training frameworks do."""

    def __init__(self) -> None:
        self.monitor = "val/loss"


# ----- the "original" checkpoint and its reference outputs, computed from the original key names -----


def original_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {"tok.weight": torch.randn(VOCAB, WIDTH, generator=generator)}
    for i in range(LAYERS):
        state[f"blocks.{i}.ln.weight"] = 1 + 0.1 * torch.randn(WIDTH, generator=generator)
        state[f"blocks.{i}.ln.bias"] = 0.1 * torch.randn(WIDTH, generator=generator)
        state[f"blocks.{i}.attn.in_proj_weight"] = torch.randn(3 * WIDTH, WIDTH, generator=generator) / WIDTH**0.5
        state[f"blocks.{i}.attn.in_proj_bias"] = 0.1 * torch.randn(3 * WIDTH, generator=generator)
        state[f"blocks.{i}.attn.out.weight"] = torch.randn(WIDTH, WIDTH, generator=generator) / WIDTH**0.5
        state[f"blocks.{i}.attn.out.bias"] = 0.1 * torch.randn(WIDTH, generator=generator)
        state[f"blocks.{i}.attn.mask"] = torch.zeros(5, 5)
    return state


def original_forward(state: dict[str, torch.Tensor], input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    hidden = state["tok.weight"][input_ids]
    for i in range(LAYERS):
        x = F.layer_norm(hidden, (WIDTH,), state[f"blocks.{i}.ln.weight"], state[f"blocks.{i}.ln.bias"], 1e-5)
        q, k, v = (x @ state[f"blocks.{i}.attn.in_proj_weight"].T + state[f"blocks.{i}.attn.in_proj_bias"]).chunk(
            3, -1
        )
        attended = torch.softmax(q @ k.transpose(-1, -2) / WIDTH**0.5, -1) @ v
        hidden = hidden + attended @ state[f"blocks.{i}.attn.out.weight"].T + state[f"blocks.{i}.attn.out.bias"]
    return {"hidden_states": hidden, "logits": hidden @ state["tok.weight"].T}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the original checkpoint and its io.safetensors; outputs go to workdir / "out"."""
    state = original_state_dict()
    torch.save(state, tmp_path / "model.pth")
    input_ids = torch.tensor([[1, 4, 9, 2, 0], [3, 3, 10, 7, 5]])
    outputs = original_forward(state, input_ids)
    tensors = {"input.input_ids": input_ids, "output.loss": torch.tensor(2.5)}
    tensors.update({f"output.{name}": value for name, value in outputs.items()})
    safetensors.torch.save_file(tensors, str(tmp_path / "io.safetensors"))
    return tmp_path


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


INPUT_FILES = ["io.safetensors", "model.pth"]


# ----- tests -----


def test_full_conversion_writes_a_loadable_folder(workdir: Path):
    result = convert_checkpoint(
        TinyConverter(), workdir / "model.pth", workdir / "out", verify_against=workdir / "io.safetensors"
    )
    assert result.container == "flat state dict"
    assert result.parity_report.passed and result.parity_report.skipped == ["loss"]
    assert result.mapping_report.mapped == 1 + LAYERS * 10
    assert result.mapping_report.dropped == [f"blocks.{i}.attn.mask" for i in range(LAYERS)]
    assert _entries(workdir) == [*INPUT_FILES, "out"]
    out = workdir / "out"
    assert {"config.json", "model.safetensors", "parity.json", "conversion_report.txt"} <= set(_entries(out))
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] is True and set(parity["outputs"]) == {"hidden_states", "logits"}
    assert parity["metadata"]["checkpoint"] == "model.pth"
    report = (out / "conversion_report.txt").read_text()
    assert "blocks.{0-1}.attn.mask  (2 keys)" in report
    assert "blocks.0.attn.in_proj_weight -> layers.0.attn.q_proj.weight" in report

    reloaded = TinyModel.from_pretrained(out)
    input_ids = torch.tensor([[2, 8, 1], [10, 0, 6]])
    expected = original_forward(original_state_dict(), input_ids)
    with torch.no_grad():
        got = reloaded(input_ids)
    for name in ("hidden_states", "logits"):
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=0)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.embed.weight.data_ptr()


def test_conversion_without_verification(workdir: Path):
    result = convert_checkpoint(TinyConverter(), workdir / "model.pth", workdir / "out", variant="tiny-6")
    assert result.parity_report is None and result.variant == "tiny-6"
    assert "parity.json" not in _entries(workdir / "out")
    assert "parity: not verified" in (workdir / "out" / "conversion_report.txt").read_text()


def _assert_nothing_written(workdir: Path) -> None:
    # Neither the output folder nor a hidden temporary sibling may remain.
    assert _entries(workdir) == sorted(INPUT_FILES + ["bad.pth"] * (workdir / "bad.pth").exists())


def _save_bad(workdir: Path, state: dict[str, torch.Tensor]) -> Path:
    path = workdir / "bad.pth"
    torch.save(state, path)
    return path


def test_leftover_keys_are_an_error(workdir: Path):
    state = original_state_dict()
    state["blocks.0.attn.temperature"] = torch.ones(1)
    state["blocks.1.attn.temperature"] = torch.ones(1)
    with pytest.raises(ConversionError, match=r"2 keys .* not covered") as error:
        convert_checkpoint(TinyConverter(), _save_bad(workdir, state), workdir / "out")
    assert "blocks.{0-1}.attn.temperature  (2 keys)" in str(error.value)
    _assert_nothing_written(workdir)


def test_missing_key_is_an_error(workdir: Path):
    state = original_state_dict()
    del state["blocks.1.ln.bias"]
    with pytest.raises(ConversionError, match=r"1 missing, 0 unexpected, 0 with another shape") as error:
        convert_checkpoint(TinyConverter(), _save_bad(workdir, state), workdir / "out")
    assert "layers.1.norm.bias" in str(error.value)
    _assert_nothing_written(workdir)


def test_shape_mismatch_is_an_error(workdir: Path):
    state = original_state_dict()
    state["blocks.0.ln.weight"] = torch.ones(WIDTH + 1)
    with pytest.raises(ConversionError, match=r"layers\.0\.norm\.weight: checkpoint \[7\] vs model \[6\]"):
        convert_checkpoint(TinyConverter(), _save_bad(workdir, state), workdir / "out")
    _assert_nothing_written(workdir)


def test_wrong_family_is_refused(workdir: Path):
    bert_like = {"bert.embeddings.word_embeddings.weight": torch.zeros(3, 2), "cls.predictions.bias": torch.zeros(3)}
    with pytest.raises(ConversionError, match=r"not look like a checkpoint of Tiny.*start with: bert\., cls\."):
        convert_checkpoint(TinyConverter(), _save_bad(workdir, bert_like), workdir / "out")
    _assert_nothing_written(workdir)


def test_parity_failure_writes_nothing_and_keeps_the_old_folder(workdir: Path):
    tensors = safetensors.torch.load_file(str(workdir / "io.safetensors"))
    tensors["output.logits"] = tensors["output.logits"] + 1e-3
    bad_reference = workdir / "bad_io.safetensors"
    safetensors.torch.save_file(tensors, str(bad_reference))
    out = workdir / "out"
    convert_checkpoint(TinyConverter(), workdir / "model.pth", out)  # an earlier conversion, without parity.json
    previous = {name: (out / name).read_bytes() for name in _entries(out)}
    with pytest.raises(ParityError) as error:
        convert_checkpoint(TinyConverter(), workdir / "model.pth", out, verify_against=bad_reference, overwrite=True)
    assert "logits" in str(error.value) and "FAIL" in str(error.value)
    assert error.value.report.failures[0].name == "logits"
    assert {name: (out / name).read_bytes() for name in _entries(out)} == previous
    assert _entries(workdir) == ["bad_io.safetensors", *INPUT_FILES, "out"]
    # A looser tolerance accepts the same reference, and the old folder is then replaced.
    convert_checkpoint(
        TinyConverter(), workdir / "model.pth", out, verify_against=bad_reference, overwrite=True, atol=2e-3
    )
    assert "parity.json" in _entries(out) and _entries(workdir) == ["bad_io.safetensors", *INPUT_FILES, "out"]


def test_existing_output_is_refused_before_any_work(workdir: Path):
    (workdir / "out").mkdir()
    (workdir / "out" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        convert_checkpoint(TinyConverter(), workdir / "does-not-exist.pth", workdir / "out")


def test_unknown_variant_lists_the_valid_ones(workdir: Path):
    with pytest.raises(ValueError, match="variant 'huge' is not a Tiny variant; valid variants: tiny-6"):
        convert_checkpoint(TinyConverter(), workdir / "model.pth", workdir / "out", variant="huge")


def test_original_config_file(workdir: Path):
    config_path = workdir / "original_config.json"
    config_path.write_text(json.dumps({"ln_eps": 1e-6}))
    result = convert_checkpoint(TinyConverter(), workdir / "model.pth", workdir / "out", original_config=config_path)
    assert result.config.layer_norm_eps == 1e-6
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        convert_checkpoint(TinyConverter(), workdir / "model.pth", workdir / "out2", original_config=config_path)


@pytest.mark.parametrize(
    ("wrap", "converter", "container"),
    [
        (lambda sd: {"model": sd, "args": argparse.Namespace(lr=1.0)}, TinyConverter(), "'model' entry"),
        (lambda sd: {"module": sd, "buffer_names": []}, TinyConverter(), "'module' entry (DeepSpeed)"),
        (
            lambda sd: {
                "state_dict": {f"model.{k}": v for k, v in sd.items()},
                "pytorch-lightning_version": "1.3.2",
                "callbacks": {TrainingCallback: {"best": 0.1}},
                "hyper_parameters": {"callback": TrainingCallback()},
            },
            LightningTinyConverter(),
            "'state_dict' entry (Lightning)",
        ),
    ],
    ids=["model", "module", "lightning"],
)
def test_containers_convert_the_same(workdir: Path, wrap, converter, container):
    path = workdir / "wrapped.ckpt"
    torch.save(wrap(original_state_dict()), path)
    result = convert_checkpoint(converter, path, workdir / "out", verify_against=workdir / "io.safetensors")
    assert result.container == container and result.parity_report.passed
    if container.endswith("(Lightning)"):
        assert result.reader == "restricted unpickler"
        assert result.neutralised == (f"{__name__}.TrainingCallback",)
        assert f"{__name__}.TrainingCallback" in (workdir / "out" / "conversion_report.txt").read_text()


def test_cli_success_prints_summary_and_parity(workdir: Path, capsys):
    argv = [
        "--checkpoint",
        str(workdir / "model.pth"),
        "--output-dir",
        str(workdir / "out"),
        "--verify-against",
        str(workdir / "io.safetensors"),
        "--variant",
        "tiny-6",
        "--atol",
        "1e-5",
    ]
    assert run_cli(TinyConverter(), argv) == 0
    printed = capsys.readouterr().out
    assert "Tiny tiny-6: 21 tensors mapped, 2 dropped deliberately" in printed
    assert "parity PASSED at atol=1e-05 (2/2 ok); not compared: loss" in printed
    assert (workdir / "out" / "model.safetensors").is_file()


def test_cli_failure_prints_the_error_without_traceback(workdir: Path, capsys):
    bad = _save_bad(workdir, {"bert.pooler.weight": torch.zeros(2, 2)})
    assert run_cli(TinyConverter(), ["--checkpoint", str(bad), "--output-dir", str(workdir / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("error: this checkpoint does not look like a checkpoint of Tiny")
    assert "Traceback" not in captured.err
    _assert_nothing_written(workdir)
    with pytest.raises(SystemExit):
        run_cli(TinyConverter(), ["--checkpoint", str(bad), "--output-dir", "x", "--variant", "huge"])


class HeadTinyConverter(TinyConverter):
    """Maps an original output head onto the head the model ties to the embedding."""

    def key_map(self, config):
        return [(r"head\.weight", r"lm_head.weight"), *super().key_map(config)]


def test_tied_weights_stored_twice_must_agree(workdir: Path):
    state = original_state_dict()
    state["head.weight"] = state["tok.weight"].clone()
    result = convert_checkpoint(HeadTinyConverter(), _save_bad(workdir, state), workdir / "out")
    assert result.mapping_report.sources["lm_head.weight"] == "head.weight"
    state["head.weight"] = state["head.weight"] + 1.0
    torch.save(state, workdir / "bad.pth")
    with pytest.raises(ConversionError, match=r"different tensors for 'head\.weight' and 'tok\.weight'"):
        convert_checkpoint(HeadTinyConverter(), workdir / "bad.pth", workdir / "out2")
    assert not (workdir / "out2").exists()


class FileWritingProcessor:
    """Stands in for a processor: writes one file, or fails half-way."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    def save_pretrained(self, folder) -> None:
        (Path(folder) / "processor_config.json").write_text("{}")
        if self.fail:
            raise OSError("disk full")


@pytest.mark.parametrize("fail", [False, True])
def test_processor_is_saved_inside_the_atomic_write(workdir: Path, fail: bool):
    class ProcessorConverter(TinyConverter):
        def build_processor(self, config):
            return FileWritingProcessor(fail)

    if fail:
        with pytest.raises(OSError, match="disk full"):
            convert_checkpoint(ProcessorConverter(), workdir / "model.pth", workdir / "out")
        assert _entries(workdir) == INPUT_FILES
    else:
        convert_checkpoint(ProcessorConverter(), workdir / "model.pth", workdir / "out")
        assert "processor_config.json" in _entries(workdir / "out")


def test_tokenizer_is_refused_by_default_before_the_checkpoint_is_read(workdir: Path):
    """A family whose tokenizer ships with vlzoo takes no --tokenizer: refused first (the checkpoint here does not
    even exist), nothing written."""
    (workdir / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(ValueError, match=r"--tokenizer .*vocab\.txt: Tiny takes no tokenizer files"):
        convert_checkpoint(TinyConverter(), workdir / "missing.pth", workdir / "out", tokenizer=workdir / "vocab.txt")
    assert _entries(workdir) == sorted([*INPUT_FILES, "vocab.txt"])


def test_tokenizer_reaches_the_converter_from_the_command_line(workdir: Path, capsys):
    class TokenizerConverter(TinyConverter):
        def __init__(self) -> None:
            self.seen: list[tuple[str, Path | None]] = []

        def check_tokenizer(self, tokenizer: Path) -> None:
            self.seen.append(("check", tokenizer))

        def build_processor(self, config: TinyConfig, tokenizer: Path | None = None) -> FileWritingProcessor:
            self.seen.append(("build", tokenizer))
            return FileWritingProcessor(fail=False)

    converter = TokenizerConverter()
    tokenizer = workdir / "tokenizer"
    tokenizer.mkdir()
    argv = ["--checkpoint", str(workdir / "model.pth"), "--output-dir", str(workdir / "out")]
    assert run_cli(converter, [*argv, "--tokenizer", str(tokenizer)]) == 0, capsys.readouterr().err
    assert converter.seen == [("check", tokenizer), ("build", tokenizer)]
    assert "processor_config.json" in _entries(workdir / "out")
