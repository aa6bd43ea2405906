"""What `FamilyConverter` does for every family: the checkpoint's stored `args` reach `infer_config`, shared
transforms, position tables resized to the model's grid, parity under eager attention, and the command line."""

import pytest
import safetensors.torch
import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from vlzoo.conversion import (
    ConversionError,
    FamilyConverter,
    convert_checkpoint,
    eager_attention,
    run_cli,
    split_qkv,
    transpose,
)
from vlzoo.layers.positions import resize_position_table_2d

WIDTH, STORED_GRID = 4, 2


class GridConfig(PreTrainedConfig):
    """A class token plus a square grid of positions, and one projection."""

    model_type = "vlzoo_converter_base_test_grid"

    def __init__(self, grid_size: int = 2, hidden_size: int = WIDTH, **kwargs):
        self.grid_size = grid_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class GridModel(PreTrainedModel):
    config_class = GridConfig
    _supports_sdpa = True

    def __init__(self, config: GridConfig):
        super().__init__(config)
        self.position_embedding = nn.Parameter(torch.zeros(1 + config.grid_size**2, config.hidden_size))
        self.proj = nn.Linear(config.hidden_size, 3, bias=False)
        self.seen_attention: list[str | None] = []
        self.post_init()

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen_attention.append(self.config._attn_implementation)
        return {"y": self.proj(x + self.position_embedding[0])}


class GridConverter(FamilyConverter):
    """The model's grid comes from the training `args` stored next to the weights (as TransVG and BEiT-3 do)."""

    family = "Grid"
    required_keys = (r"pos", r"proj")
    position_tables = {r"position_embedding": 1}

    def __init__(self):
        self.extra = None

    def infer_config(self, state_dict, *, original_config, variant, extra):
        self.extra = extra
        return GridConfig(grid_size=extra["args"]["grid"], hidden_size=state_dict["pos"].shape[-1])

    def key_map(self, config):
        return [(r"pos", "position_embedding"), (r"proj", "proj.weight")]

    def transforms(self, config):
        return {r"proj\.weight": transpose}  # stored as [in, out]

    def build_model(self, config):
        return GridModel(config)

    def parity_outputs(self, model, inputs):
        return model(inputs["x"])


def _checkpoint(path, grid: int, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {
        "pos": torch.randn(1 + STORED_GRID**2, WIDTH, generator=generator),
        "proj": torch.randn(WIDTH, 3, generator=generator),
    }
    torch.save({"model": state, "args": {"grid": grid, "lr": 1e-4}}, path)
    return state


def test_stored_args_reach_infer_config_and_tables_are_resized_to_the_model_grid(tmp_path):
    state = _checkpoint(tmp_path / "model.pth", grid=3)
    converter = GridConverter()
    result = convert_checkpoint(converter, tmp_path / "model.pth", tmp_path / "out")
    assert converter.extra == {"args": {"grid": 3, "lr": 1e-4}}
    model = GridModel.from_pretrained(tmp_path / "out")
    expected = resize_position_table_2d(state["pos"], 3, num_prefix_rows=1)
    torch.testing.assert_close(model.position_embedding.data, expected, rtol=0, atol=0)
    torch.testing.assert_close(model.position_embedding.data[0], state["pos"][0], rtol=0, atol=0)
    torch.testing.assert_close(model.proj.weight.data, state["proj"].t(), rtol=0, atol=0)
    assert result.resized == ("position_embedding: [5, 4] -> [10, 4]",)
    assert "position tables resized" in (tmp_path / "out" / "conversion_report.txt").read_text()


def test_a_table_at_the_model_grid_is_loaded_as_stored(tmp_path):
    state = _checkpoint(tmp_path / "model.pth", grid=STORED_GRID)
    result = convert_checkpoint(GridConverter(), tmp_path / "model.pth", tmp_path / "out")
    assert result.resized == ()
    model = GridModel.from_pretrained(tmp_path / "out")
    torch.testing.assert_close(model.position_embedding.data, state["pos"], rtol=0, atol=0)


def test_a_grid_that_cannot_be_resized_is_refused_and_nothing_is_written(tmp_path):
    _checkpoint(tmp_path / "model.pth", grid=3)

    class NotSquare(GridConverter):
        position_tables = {r"position_embedding": 2}  # 10 rows - 2 = 8 cells: not a square grid

    with pytest.raises(ConversionError, match=r"cannot resize the position table position_embedding"):
        convert_checkpoint(NotSquare(), tmp_path / "model.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parity_runs_with_eager_attention_and_restores_the_implementation(tmp_path):
    state = _checkpoint(tmp_path / "model.pth", grid=STORED_GRID)
    x = torch.randn(2, WIDTH)
    reference = {"input.x": x, "output.y": (x + state["pos"][0]) @ state["proj"]}
    safetensors.torch.save_file(reference, str(tmp_path / "io.safetensors"))
    converter = GridConverter()
    built: list[GridModel] = []
    converter.build_model = lambda config: built.append(GridModel(config)) or built[-1]
    result = convert_checkpoint(
        converter, tmp_path / "model.pth", tmp_path / "out", verify_against=tmp_path / "io.safetensors"
    )
    assert result.parity_report.passed
    model = built[-1]
    assert model.seen_attention == ["eager"]
    assert model.config._attn_implementation == "sdpa"


def test_eager_attention_restores_every_sub_config_exactly():
    from tests.models.ms_clip.tester import tiny_config
    from vlzoo.models.ms_clip import MsClipModel

    model = MsClipModel(tiny_config())
    configs = [model.config, model.config.vision_config, model.config.text_config]
    before = [config._attn_implementation for config in configs]
    with eager_attention(model):
        assert [config._attn_implementation for config in configs] == ["eager"] * 3
    assert [config._attn_implementation for config in configs] == before


def test_shared_transforms():
    fused = torch.arange(3 * 4 * 2, dtype=torch.float32).reshape(12, 2)
    parts = split_qkv()("layers.0.attn.in_proj.weight", fused)
    assert list(parts) == ["layers.0.attn.q_proj.weight", "layers.0.attn.k_proj.weight", "layers.0.attn.v_proj.weight"]
    torch.testing.assert_close(torch.cat(list(parts.values())), fused)
    matrix = torch.randn(3, 5)
    assert transpose("proj.weight", matrix).shape == (5, 3) and transpose("proj.weight", matrix).is_contiguous()
    with pytest.raises(ConversionError, match="expected a 2-D matrix"):
        transpose("scale", torch.ones(3))


def test_run_cli_takes_the_entry_point_name_and_description(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        run_cli(GridConverter(), ["--help"], prog="convert.py", description="Convert a Grid checkpoint.")
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: convert.py") and "Convert a Grid checkpoint." in out
    assert "--variant" not in out  # a family without variants offers no --variant
    _checkpoint(tmp_path / "model.pth", grid=3)
    assert (
        run_cli(GridConverter(), ["--checkpoint", str(tmp_path / "model.pth"), "--output-dir", str(tmp_path / "o")])
        == 0
    )
    assert GridModel.from_pretrained(tmp_path / "o").config.grid_size == 3
