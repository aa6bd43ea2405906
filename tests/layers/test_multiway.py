"""Multiway routing against hand-written splits; multiway attention and layers against plain single-expert ones."""

import re

import pytest
import torch
from torch import nn

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.multiway import TORCHSCALE_EXPERT_NAMES, Multiway, route
from vlzoo.layers.transformer import TransformerLayer


def _randomize(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3 + 0.1)


def test_split_routes_leading_tokens_to_vision():
    torch.manual_seed(0)
    multiway = Multiway(nn.Linear, 6, 5)
    _randomize(multiway, 0)
    tokens = torch.randn(2, 7, 6)
    expected = torch.cat([tokens[:, :3] @ multiway.vision.weight.T, tokens[:, 3:] @ multiway.language.weight.T], 1)
    expected = expected + torch.cat([multiway.vision.bias.expand(3, 5), multiway.language.bias.expand(4, 5)])
    torch.testing.assert_close(multiway(tokens, 3), expected)


@pytest.mark.parametrize(("split_position", "expert"), [(7, "vision"), (0, "language")])
def test_whole_sequence_runs_one_expert_only(split_position, expert):
    multiway = Multiway(nn.Linear, 6, 5)
    tokens = torch.randn(2, 7, 6)
    output = multiway(tokens, split_position)
    torch.testing.assert_close(output, getattr(multiway, expert)(tokens))
    output.sum().backward()
    other = "language" if expert == "vision" else "vision"
    assert getattr(multiway, expert).weight.grad is not None
    assert getattr(multiway, other).weight.grad is None


def test_factory_arguments_and_split_axis():
    norms = Multiway(nn.LayerNorm, 4, eps=1e-3)
    assert norms.vision.eps == norms.language.eps == 1e-3 and norms.vision is not norms.language
    assert set(norms.state_dict()) == {"vision.weight", "vision.bias", "language.weight", "language.bias"}
    # along another axis: [seq, batch, hidden]
    multiway = Multiway(nn.Linear, 3, 3, dim=0)
    tokens = torch.randn(5, 2, 3)
    torch.testing.assert_close(
        multiway(tokens, 2), torch.cat([multiway.vision(tokens[:2]), multiway.language(tokens[2:])])
    )


def test_torchscale_names_convert_with_one_rename():
    layer = TransformerLayer(8, 2, 16, multiway=True, sub_layer_norm=True)
    torchscale_keys = {
        re.sub(r"\.(vision|language)(\.|$)", lambda m: {"vision": ".A", "language": ".B"}[m.group(1)] + m.group(2), k)
        for k in layer.state_dict()
    }
    assert "self_attn.q_proj.A.weight" in torchscale_keys and "mlp.B.ffn_layernorm.bias" in torchscale_keys
    renamed = {
        re.sub(r"\.([AB])(\.|$)", lambda m: f".{TORCHSCALE_EXPERT_NAMES[m.group(1)]}{m.group(2)}", k)
        for k in torchscale_keys
    }
    assert renamed == set(layer.state_dict())


def test_route_passes_the_split_to_multiway_modules_only():
    plain, multiway = nn.Linear(3, 3), Multiway(nn.Linear, 3, 3)
    tokens = torch.randn(1, 4, 3)
    torch.testing.assert_close(route(plain, tokens, 2), plain(tokens))
    torch.testing.assert_close(route(multiway, tokens, 2), multiway(tokens, 2))


def test_routing_errors():
    multiway = Multiway(nn.Linear, 3, 3)
    tokens = torch.randn(1, 4, 3)
    with pytest.raises(ValueError, match=r"split_position is required .* 4 = the sequence length for vision-only"):
        multiway(tokens)
    with pytest.raises(ValueError, match=r"split_position must lie in \[0, 4\].*torchscale's -1"):
        multiway(tokens, -1)
    with pytest.raises(TypeError, match="split_position must be a Python int; got Tensor"):
        multiway(tokens, torch.tensor(2))


def _single_expert_copy(multiway_module: nn.Module, plain_module: nn.Module, expert: str) -> None:
    """Load the `expert` weights of a multiway module into a plain module of the same architecture."""
    state = {
        re.sub(rf"\.{expert}(\.|$)", r"\1", f".{key}")[1:]: value
        for key, value in multiway_module.state_dict().items()
        if "vision" not in key and "language" not in key or f".{expert}" in f".{key}"
    }
    plain_module.load_state_dict(state)


@pytest.mark.parametrize("expert", ["vision", "language"])
def test_multiway_layer_on_one_modality_equals_a_plain_layer(expert):
    torch.manual_seed(1)
    options = {"sub_layer_norm": True, "scale_queries": True, "attn_implementation": "eager"}
    multiway = TransformerLayer(8, 2, 16, multiway=True, **options)
    _randomize(multiway, 1)
    plain = TransformerLayer(8, 2, 16, **options)
    _single_expert_copy(multiway, plain, expert)
    tokens = torch.randn(2, 5, 8)
    split_position = 5 if expert == "vision" else 0
    torch.testing.assert_close(multiway(tokens, split_position=split_position), plain(tokens))


def test_multiway_attention_mixes_experts_in_one_softmax():
    torch.manual_seed(2)
    attention = MultiHeadAttention(8, 2, multiway=True, inner_layer_norm_eps=1e-5, attn_implementation="eager")
    _randomize(attention, 2)
    tokens, split = torch.randn(2, 5, 8), 2

    def projection(name):
        module = getattr(attention, name)
        return torch.cat([module.vision(tokens[:, :split]), module.language(tokens[:, split:])], 1)

    def heads(x):
        return x.view(2, 5, 2, 4).transpose(1, 2)

    q, k, v = heads(projection("q_proj")), heads(projection("k_proj")), heads(projection("v_proj"))
    merged = ((q @ k.transpose(-1, -2) / 2.0).softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 8)
    merged = torch.cat(
        [attention.inner_attn_ln.vision(merged[:, :split]), attention.inner_attn_ln.language(merged[:, split:])], 1
    )
    expected = torch.cat(
        [attention.out_proj.vision(merged[:, :split]), attention.out_proj.language(merged[:, split:])], 1
    )
    torch.testing.assert_close(attention(tokens, split_position=split)[0], expected, atol=1e-5, rtol=1e-5)
