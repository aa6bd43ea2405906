"""TransformerLayer: pre-/post-LN op order against hand-written formulas and transformers' DETR and BERT layers,
cross-attention, activations, dropout and drop-path, gradient checkpointing."""

from functools import partial

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from transformers import BertConfig, DetrConfig
from transformers.activations import ACT2FN
from transformers.models.bert.modeling_bert import BertLayer
from transformers.models.detr.modeling_detr import DetrEncoderLayer

from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.transformer import TransformerFeedForward, TransformerLayer, drop_path

HIDDEN, HEADS, FFN, BATCH, LENGTH, OTHER = 12, 3, 20, 3, 5, 4


def _randomize(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            is_norm_weight = "norm" in name.lower() and name.endswith("weight")
            parameter.copy_(1 + 0.2 * noise if is_norm_weight else 0.4 * noise)


def _attention(module, queries, keys, values, mask=None):
    """softmax(q k^T / sqrt(d) + mask) v written out, with the module's projections."""
    batch = queries.shape[0]

    def heads(x):
        return x.view(batch, -1, HEADS, HIDDEN // HEADS).transpose(1, 2)

    q, k, v = heads(module.q_proj(queries)), heads(module.k_proj(keys)), heads(module.v_proj(values))
    scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5
    if mask is not None:
        scores = scores + mask
    merged = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, queries.shape[1], HIDDEN)
    return module.out_proj(merged)


def _norm(module, x):
    return F.layer_norm(x, (x.shape[-1],), module.weight, module.bias, module.eps)


@pytest.mark.parametrize("activation", ["quick_gelu", "gelu", "gelu_pytorch_tanh"])
def test_pre_ln_op_order(activation):
    torch.manual_seed(0)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, activation=activation, layer_norm_eps=1e-3)
    _randomize(layer, 0)
    x = torch.randn(BATCH, LENGTH, HIDDEN)
    normed = _norm(layer.layer_norm1, x)
    h = x + _attention(layer.self_attn, normed, normed, normed)
    act = ACT2FN[activation]
    expected = h + layer.mlp.fc2(act(layer.mlp.fc1(_norm(layer.layer_norm2, h))))
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    assert layer.layer_norm1.eps == 1e-3


def test_post_ln_op_order_with_cross_attention_and_positions():
    torch.manual_seed(1)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, norm_first=False, cross_attention=True, cross_attention_size=7)
    _randomize(layer, 1)
    x, memory = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, 7)
    pos, memory_pos = torch.randn(1, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, 7)
    keep = torch.ones(BATCH, OTHER, dtype=torch.long)
    keep[1, -2:] = 0
    mask = key_padding_attention_mask(keep, dtype=torch.float32)
    h = _norm(layer.layer_norm1, x + _attention(layer.self_attn, x + pos, x + pos, x))
    h = _norm(
        layer.cross_attn_layer_norm, h + _attention(layer.cross_attn, h + pos, memory + memory_pos, memory, mask)
    )
    expected = _norm(layer.layer_norm2, h + layer.mlp.fc2(F.gelu(layer.mlp.fc1(h))))
    output = layer(x, None, memory, mask, position_embeddings=pos, encoder_position_embeddings=memory_pos)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)


def test_pre_ln_cross_attention_without_its_norm_reads_the_raw_stream():
    # TransVG++ language blocks: x + CrossAttn(q=x, k=v=text), the query NOT normalised (transvg.md §3)
    torch.manual_seed(2)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True, cross_attention_norm=False)
    _randomize(layer, 2)
    assert layer.cross_attn_layer_norm is None
    x, text = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, HIDDEN)
    normed = _norm(layer.layer_norm1, x)
    h = x + _attention(layer.self_attn, normed, normed, normed)
    h = h + _attention(layer.cross_attn, h, text, text)
    expected = h + layer.mlp.fc2(F.gelu(layer.mlp.fc1(_norm(layer.layer_norm2, h))))
    torch.testing.assert_close(layer(x, encoder_hidden_states=text), expected, atol=1e-5, rtol=1e-5)


def test_sub_layer_norms_sit_before_out_proj_and_fc2():
    torch.manual_seed(3)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, sub_layer_norm=True, layer_norm_eps=1e-4)
    _randomize(layer, 3)
    assert layer.self_attn.inner_attn_ln.normalized_shape == (HIDDEN,)
    assert layer.mlp.ffn_layernorm.normalized_shape == (FFN,) and layer.mlp.ffn_layernorm.eps == 1e-4
    x = torch.randn(BATCH, LENGTH, HIDDEN)
    attention = layer.self_attn
    normed = _norm(layer.layer_norm1, x)

    def heads(t):
        return t.view(BATCH, -1, HEADS, HIDDEN // HEADS).transpose(1, 2)

    q, k, v = heads(attention.q_proj(normed)), heads(attention.k_proj(normed)), heads(attention.v_proj(normed))
    merged = ((q @ k.transpose(-1, -2) * (HIDDEN // HEADS) ** -0.5).softmax(-1) @ v).transpose(1, 2)
    h = x + attention.out_proj(_norm(attention.inner_attn_ln, merged.reshape(BATCH, LENGTH, HIDDEN)))
    mlp = layer.mlp
    expected = h + mlp.fc2(_norm(mlp.ffn_layernorm, F.gelu(mlp.fc1(_norm(layer.layer_norm2, h)))))
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_post_ln_with_positions_matches_transformers_detr_encoder_layer():
    torch.manual_seed(4)
    config = DetrConfig(
        d_model=HIDDEN, encoder_attention_heads=HEADS, encoder_ffn_dim=FFN, activation_function="relu", dropout=0.0
    )
    config._attn_implementation = "eager"
    reference = DetrEncoderLayer(config).eval()
    _randomize(reference, 4)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, activation="relu", norm_first=False).eval()
    renames = {"self_attn.o_proj": "self_attn.out_proj", "self_attn_layer_norm": "layer_norm1"}
    renames |= {"final_layer_norm": "layer_norm2"}
    state = {}
    for key, value in reference.state_dict().items():
        for old, new in renames.items():
            key = key.replace(old, new)
        state[key] = value
    layer.load_state_dict(state)
    x, pos = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, LENGTH, HIDDEN)
    keep = torch.ones(BATCH, LENGTH, dtype=torch.long)
    keep[0, -2:] = 0
    mask = key_padding_attention_mask(keep, dtype=torch.float32)
    expected = reference(x, mask, spatial_position_embeddings=pos)
    torch.testing.assert_close(layer(x, mask, position_embeddings=pos), expected, atol=1e-5, rtol=1e-5)


def test_co_attention_layer_matches_transformers_bert_layer():
    # METER's BertCrossLayer: post-LN self-attention -> cross-attention -> FFN, eps 1e-12 (meter.md §2.4)
    torch.manual_seed(5)
    config = BertConfig(
        hidden_size=HIDDEN,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        is_decoder=True,
        add_cross_attention=True,
    )
    config._attn_implementation = "eager"
    reference = BertLayer(config).eval()
    _randomize(reference, 5)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, norm_first=False, cross_attention=True, layer_norm_eps=1e-12).eval()
    renames = [
        ("attention.self.query", "self_attn.q_proj"),
        ("attention.self.key", "self_attn.k_proj"),
        ("attention.self.value", "self_attn.v_proj"),
        ("attention.output.dense", "self_attn.out_proj"),
        ("attention.output.LayerNorm", "layer_norm1"),
        ("crossself_attn.q_proj", "cross_attn.q_proj"),
        ("crossself_attn.k_proj", "cross_attn.k_proj"),
        ("crossself_attn.v_proj", "cross_attn.v_proj"),
        ("crossself_attn.out_proj", "cross_attn.out_proj"),
        ("crosslayer_norm1", "cross_attn_layer_norm"),
        ("intermediate.dense", "mlp.fc1"),
        ("output.dense", "mlp.fc2"),
        ("output.LayerNorm", "layer_norm2"),
    ]
    state = {}
    for key, value in reference.state_dict().items():
        for old, new in renames:
            key = key.replace(old, new)
        state[key] = value
    layer.load_state_dict(state)
    text, image = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, HIDDEN)
    text_keep = torch.ones(BATCH, LENGTH, dtype=torch.long)
    text_keep[2, -3:] = 0
    image_keep = torch.ones(BATCH, OTHER, dtype=torch.long)
    image_keep[1, -1] = 0
    own = key_padding_attention_mask(text_keep, dtype=torch.float32)
    other = key_padding_attention_mask(image_keep, dtype=torch.float32)
    expected = reference(text, own, image, other)
    torch.testing.assert_close(layer(text, own, image, other), expected, atol=1e-5, rtol=1e-5)


def test_eager_and_sdpa_layers_agree():
    torch.manual_seed(6)
    eager = TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True, attn_implementation="eager")
    sdpa = TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True, attn_implementation="sdpa")
    _randomize(eager, 6)
    sdpa.load_state_dict(eager.state_dict())
    x, memory = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, HIDDEN)
    keep = torch.ones(BATCH, OTHER, dtype=torch.bool)
    keep[0, 1:] = False
    mask = keep[:, None, None, :]
    torch.testing.assert_close(sdpa(x, None, memory, mask), eager(x, None, memory, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_gradient_checkpointing_gives_the_same_gradients(use_reentrant):
    torch.manual_seed(7)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True, sub_layer_norm=True)
    _randomize(layer, 7)
    layer.train()
    x, memory = torch.randn(BATCH, LENGTH, HIDDEN), torch.randn(BATCH, OTHER, HIDDEN)

    def gradients():
        inputs = [x.clone().requires_grad_(), memory.clone().requires_grad_()]
        layer.zero_grad()
        layer(inputs[0], None, inputs[1]).pow(2).sum().backward()
        grads = {name: p.grad.clone() for name, p in layer.named_parameters()}
        return grads, [t.grad for t in inputs]

    plain, plain_inputs = gradients()
    layer.gradient_checkpointing = True
    calls = []

    def counting_checkpoint(function, *args, **kwargs):
        calls.append(len(args))
        return checkpoint(function, *args, use_reentrant=use_reentrant, **kwargs)

    layer._gradient_checkpointing_func = partial(counting_checkpoint)
    checkpointed, checkpointed_inputs = gradients()
    assert calls == [3]  # the layer really went through the checkpoint, both streams positional
    assert plain.keys() == checkpointed.keys() and len(plain) > 10
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)
    for got, expected in zip(checkpointed_inputs, plain_inputs, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_dropout_and_drop_path_act_in_training_only():
    torch.manual_seed(8)
    layer = TransformerLayer(HIDDEN, HEADS, FFN, dropout=0.3, attention_dropout=0.3, drop_path=0.3)
    reference = TransformerLayer(HIDDEN, HEADS, FFN)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(BATCH, LENGTH, HIDDEN)
    torch.testing.assert_close(layer.eval()(x), reference.eval()(x))
    assert not torch.allclose(layer.train()(x), reference(x), atol=1e-3)


def test_drop_path_drops_whole_samples_and_rescales():
    torch.manual_seed(9)
    update = torch.randn(400, 3, 2)
    dropped = drop_path(update, 0.25, training=True)
    kept = (dropped != 0).flatten(1).any(dim=1)
    torch.testing.assert_close(dropped[kept], update[kept] / 0.75)
    assert (dropped[~kept] == 0).all() and 0.6 < kept.float().mean() < 0.9
    assert drop_path(update, 0.25, training=False) is update


def test_feed_forward_activation_dropout_and_sub_ln():
    torch.manual_seed(10)
    mlp = TransformerFeedForward(HIDDEN, FFN, "relu", sub_layer_norm_eps=1e-6, activation_dropout=0.5)
    _randomize(mlp, 10)
    x = torch.randn(BATCH, HIDDEN)
    expected = mlp.fc2(_norm(mlp.ffn_layernorm, F.relu(mlp.fc1(x))))
    torch.testing.assert_close(mlp.eval()(x), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mlp.train()(x), expected, atol=1e-3)


def test_layer_errors():
    with pytest.raises(ValueError, match="a multiway layer has no cross-attention"):
        TransformerLayer(HIDDEN, HEADS, FFN, multiway=True, cross_attention=True)
    with pytest.raises(ValueError, match=r"drop_path must be in \[0, 1\); got 1.5"):
        TransformerLayer(HIDDEN, HEADS, FFN, drop_path=1.5)
    x = torch.randn(BATCH, LENGTH, HIDDEN)
    with pytest.raises(ValueError, match="encoder_hidden_states was given to a layer built without cross_attention"):
        TransformerLayer(HIDDEN, HEADS, FFN)(x, None, x)
    with pytest.raises(ValueError, match="needs encoder_hidden_states"):
        TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True)(x)
    with pytest.raises(ValueError, match="activation 'swishy' is not a transformers activation name"):
        TransformerLayer(HIDDEN, HEADS, FFN, activation="swishy")


def test_layers_export_with_torch_export():
    # no check reads tensor values, so torch.export (and ONNX through it) can trace multiway and cross layers
    torch.manual_seed(11)
    multiway = TransformerLayer(HIDDEN, HEADS, FFN, multiway=True, sub_layer_norm=True, scale_queries=True).eval()
    x = torch.randn(BATCH, LENGTH, HIDDEN)
    keep = torch.ones(BATCH, LENGTH, dtype=torch.long)
    keep[0, -1] = 0
    mask = key_padding_attention_mask(keep, dtype=torch.float32)

    class Routed(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = multiway

        def forward(self, hidden, attention_mask):
            return self.layer(hidden, attention_mask, split_position=3)

    exported = torch.export.export(Routed(), (x, mask))
    torch.testing.assert_close(exported.module()(x, mask), multiway(x, mask, split_position=3))
    cross = TransformerLayer(HIDDEN, HEADS, FFN, cross_attention=True, norm_first=False).eval()
    memory = torch.randn(BATCH, OTHER, HIDDEN)
    exported = torch.export.export(cross, (x, None, memory))
    torch.testing.assert_close(exported.module()(x, None, memory), cross(x, None, memory))
