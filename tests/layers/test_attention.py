"""MultiHeadAttention against torch.nn.MultiheadAttention and hand-written formulas; eager vs sdpa; mask forms."""

import pytest
import torch
from torch import nn
from transformers import PreTrainedConfig

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.masks import key_padding_attention_mask

HIDDEN, HEADS, BATCH, QUERIES, KEYS = 24, 3, 3, 5, 7


def _randomize(module: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def _copy_from_torch(reference: nn.MultiheadAttention, attention: MultiHeadAttention) -> None:
    """Load an `nn.MultiheadAttention`'s weights (packed or separate q/k/v) into `attention`."""
    with torch.no_grad():
        if reference._qkv_same_embed_dim:
            q, k, v = reference.in_proj_weight.chunk(3)
        else:
            q, k, v = reference.q_proj_weight, reference.k_proj_weight, reference.v_proj_weight
        q_bias, k_bias, v_bias = reference.in_proj_bias.chunk(3)
        for projection, weight, bias in (
            (attention.q_proj, q, q_bias),
            (attention.k_proj, k, k_bias),
            (attention.v_proj, v, v_bias),
            (attention.out_proj, reference.out_proj.weight, reference.out_proj.bias),
        ):
            projection.weight.copy_(weight)
            projection.bias.copy_(bias)


def _padding(batch: int, length: int) -> torch.Tensor:
    """1 = keep; row i keeps its first `length - i` positions."""
    return (torch.arange(length)[None, :] < (length - torch.arange(batch))[:, None]).long()


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_self_attention_matches_torch_with_padding(implementation):
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(HIDDEN, HEADS, batch_first=True)
    _randomize(reference)
    attention = MultiHeadAttention(HIDDEN, HEADS, attn_implementation=implementation)
    _copy_from_torch(reference, attention)
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    keep = _padding(BATCH, QUERIES)
    expected, expected_weights = reference(
        hidden, hidden, hidden, key_padding_mask=keep == 0, need_weights=True, average_attn_weights=False
    )
    output, weights = attention(hidden, key_padding_attention_mask(keep, dtype=torch.float32))
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    if implementation == "eager":
        torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)
    else:
        assert weights is None


def test_cross_attention_with_kdim_vdim_and_positions_matches_torch():
    torch.manual_seed(1)
    kdim, vdim = 11, 13
    reference = nn.MultiheadAttention(HIDDEN, HEADS, kdim=kdim, vdim=vdim, batch_first=True)
    _randomize(reference, seed=1)
    attention = MultiHeadAttention(HIDDEN, HEADS, kdim=kdim, vdim=vdim, attn_implementation="eager")
    _copy_from_torch(reference, attention)
    queries, keys, values = (
        torch.randn(BATCH, QUERIES, HIDDEN),
        torch.randn(BATCH, KEYS, kdim),
        torch.randn(BATCH, KEYS, vdim),
    )
    query_position, key_position = torch.randn(1, QUERIES, HIDDEN), torch.randn(BATCH, KEYS, kdim)
    keep = _padding(BATCH, KEYS)
    # DETR: positions enter the query and key inputs, never the values
    expected, expected_weights = reference(
        queries + query_position,
        keys + key_position,
        values,
        key_padding_mask=keep == 0,
        average_attn_weights=False,
    )
    output, weights = attention(
        queries,
        key_padding_attention_mask(keep, dtype=torch.float32),
        keys,
        value_states=values,
        query_position=query_position,
        key_position=key_position,
    )
    assert output.shape == (BATCH, QUERIES, HIDDEN) and weights.shape == (BATCH, HEADS, QUERIES, KEYS)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, expected_weights, atol=1e-6, rtol=1e-5)


def test_boolean_and_additive_masks_agree_under_eager_and_sdpa():
    torch.manual_seed(2)
    attention = MultiHeadAttention(HIDDEN, HEADS, kdim=10)
    _randomize(attention, seed=2)
    queries, keys = torch.randn(BATCH, QUERIES, HIDDEN), torch.randn(BATCH, KEYS, 10)
    allowed = torch.rand(BATCH, 1, QUERIES, KEYS) > 0.4
    allowed[..., 0] = True  # every query keeps at least one key
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, -1e9)
    outputs = []
    for implementation in ("eager", "sdpa"):
        attention.attn_implementation = implementation
        outputs += [attention(queries, mask, keys)[0] for mask in (allowed, additive)]
    for output in outputs[1:]:
        torch.testing.assert_close(output, outputs[0], atol=1e-5, rtol=1e-5)
    # blocked keys really are ignored: changing them does not change the output
    changed = keys.clone()
    changed[~allowed[:, 0].any(dim=1)] += 5.0
    torch.testing.assert_close(attention(queries, allowed, changed)[0], outputs[-1], atol=1e-5, rtol=1e-5)


def _manual_attention(attention: MultiHeadAttention, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v per head, then out_proj, written out by hand."""
    batch, length, _ = hidden.shape

    def heads(x):
        return x.view(batch, -1, HEADS, HIDDEN // HEADS).transpose(1, 2)

    q, k, v = heads(attention.q_proj(hidden)), heads(attention.k_proj(hidden)), heads(attention.v_proj(hidden))
    scores = q @ k.transpose(-1, -2) / (HIDDEN // HEADS) ** 0.5
    if mask is not None:
        scores = scores + mask
    merged = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, HIDDEN)
    if attention.inner_attn_ln is not None:
        merged = attention.inner_attn_ln(merged)
    return attention.out_proj(merged)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_never_causal_unless_asked(implementation):
    torch.manual_seed(3)
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    plain = MultiHeadAttention(HIDDEN, HEADS, attn_implementation=implementation)
    _randomize(plain, seed=3)
    torch.testing.assert_close(plain(hidden)[0], _manual_attention(plain, hidden, None), atol=1e-5, rtol=1e-5)
    causal = MultiHeadAttention(HIDDEN, HEADS, is_causal=True, attn_implementation=implementation)
    causal.load_state_dict(plain.state_dict())
    future = torch.full((QUERIES, QUERIES), float("-inf")).triu(1)
    torch.testing.assert_close(causal(hidden)[0], _manual_attention(plain, hidden, future), atol=1e-5, rtol=1e-5)
    # a padding mask combines with causality
    keep = _padding(BATCH, QUERIES)
    padding = key_padding_attention_mask(keep, dtype=torch.float32)
    torch.testing.assert_close(
        causal(hidden, padding)[0][:, :1], _manual_attention(plain, hidden, padding + future)[:, :1], atol=1e-5, rtol=0
    )


def test_scale_queries_order_and_custom_scaling():
    torch.manual_seed(4)
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    attention = MultiHeadAttention(HIDDEN, HEADS, scaling=0.3, scale_queries=True, attn_implementation="eager")
    _randomize(attention, seed=4)
    batch = hidden.shape[0]

    def heads(x):
        return x.view(batch, -1, HEADS, HIDDEN // HEADS).transpose(1, 2)

    # torchscale (beit3.md §2.5): q = q_proj(h) * scaling, then q @ k^T without further scaling
    q = heads(attention.q_proj(hidden) * 0.3)
    k, v = heads(attention.k_proj(hidden)), heads(attention.v_proj(hidden))
    probabilities = torch.softmax((q @ k.transpose(-1, -2)).float(), dim=-1)
    expected = attention.out_proj((probabilities @ v).transpose(1, 2).reshape(batch, QUERIES, HIDDEN))
    output, weights = attention(hidden)
    torch.testing.assert_close(output, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(weights, probabilities, atol=1e-7, rtol=1e-6)
    scores_scaled = MultiHeadAttention(HIDDEN, HEADS, scaling=0.3, attn_implementation="eager")
    scores_scaled.load_state_dict(attention.state_dict())
    torch.testing.assert_close(scores_scaled(hidden)[0], expected, atol=1e-5, rtol=1e-5)


def test_inner_layer_norm_and_biases():
    torch.manual_seed(5)
    attention = MultiHeadAttention(HIDDEN, HEADS, key_bias=False, inner_layer_norm_eps=1e-3)
    _randomize(attention, seed=5)
    assert attention.k_proj.bias is None and attention.q_proj.bias is not None
    assert attention.inner_attn_ln.eps == 1e-3
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    torch.testing.assert_close(attention(hidden)[0], _manual_attention(attention, hidden, None), atol=1e-5, rtol=1e-5)
    names = set(MultiHeadAttention(HIDDEN, HEADS, qkv_bias=False, out_bias=False).state_dict())
    assert names == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "out_proj.weight"}


def test_dropout_only_in_training():
    torch.manual_seed(6)
    attention = MultiHeadAttention(HIDDEN, HEADS, dropout=0.5, attn_implementation="eager")
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    attention.eval()
    torch.testing.assert_close(attention(hidden)[0], _manual_attention(attention, hidden, None), atol=1e-5, rtol=0)
    attention.train()
    assert not torch.allclose(attention(hidden)[0], _manual_attention(attention, hidden, None), atol=1e-3)


def test_implementation_is_read_from_the_config_at_call_time():
    config = PreTrainedConfig()
    config._attn_implementation = "eager"
    attention = MultiHeadAttention(HIDDEN, HEADS, config=config)
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    assert attention(hidden)[1] is not None
    config._attn_implementation = "sdpa"
    assert attention(hidden)[1] is None


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_heads must be a positive divisor of hidden_size=24; got 5"):
        MultiHeadAttention(HIDDEN, 5)
    with pytest.raises(ValueError, match="pass either config"):
        MultiHeadAttention(HIDDEN, HEADS, config=PreTrainedConfig(), attn_implementation="eager")
    attention = MultiHeadAttention(HIDDEN, HEADS, kdim=10)
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    with pytest.raises(ValueError, match=r"attention_mask must be 4-D.*key_padding_attention_mask"):
        MultiHeadAttention(HIDDEN, HEADS)(hidden, torch.ones(BATCH, QUERIES))
    with pytest.raises(TypeError, match="boolean \\(True = attend\\) or additive float; got torch.int64"):
        attention(hidden, torch.ones(BATCH, 1, 1, KEYS, dtype=torch.long), torch.randn(BATCH, KEYS, 10))
    with pytest.raises(ValueError, match="kdim=10, vdim=10, not the hidden_size 24 .* pass them as key_value_states"):
        attention(hidden)
    with pytest.raises(ValueError, match=r"key_value_states must have shape \[batch, k_len, 10\] \(kdim\)"):
        attention(hidden, None, torch.randn(BATCH, KEYS, HIDDEN))
    with pytest.raises(ValueError, match=r"hidden_states must have shape \[batch, seq, 24\]"):
        attention(torch.randn(BATCH, QUERIES, 10))
    with pytest.raises(ValueError, match="value_states is only used for cross-attention"):
        MultiHeadAttention(HIDDEN, HEADS)(hidden, value_states=hidden)
    with pytest.raises(ValueError, match="no cross-attention"):
        MultiHeadAttention(HIDDEN, HEADS, multiway=True)(hidden, None, hidden, split_position=2)


def test_key_padding_attention_mask():
    keep = torch.tensor([[1, 1, 0], [1, 0, 0]])
    mask = key_padding_attention_mask(keep, dtype=torch.float16)
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.float16
    assert (mask[keep[:, None, None, :] == 1] == 0).all()
    assert (mask[keep[:, None, None, :] == 0] == torch.finfo(torch.float16).min).all()
    with pytest.raises(ValueError, match=r"padding_mask must have shape \[batch, k_len\]"):
        key_padding_attention_mask(keep[0], dtype=torch.float32)


def test_shared_projections_split_into_other_head_counts_and_follow_replacement():
    torch.manual_seed(0)
    source = MultiHeadAttention(HIDDEN, HEADS, attn_implementation="eager")
    _randomize(source)
    state = torch.random.get_rng_state()
    six_heads = MultiHeadAttention(HIDDEN, 6, attn_implementation="eager", share_projections_with=source)
    assert torch.equal(torch.random.get_rng_state(), state), "sharing projections must draw no random numbers"
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert getattr(six_heads, name) is getattr(source, name)
    assert [n for n, _ in six_heads.named_parameters()] == [n for n, _ in source.named_parameters()]
    reference = nn.MultiheadAttention(HIDDEN, 6, batch_first=True)
    with torch.no_grad():
        reference.in_proj_weight.copy_(torch.cat([source.q_proj.weight, source.k_proj.weight, source.v_proj.weight]))
        reference.in_proj_bias.copy_(torch.cat([source.q_proj.bias, source.k_proj.bias, source.v_proj.bias]))
        reference.out_proj.load_state_dict(source.out_proj.state_dict())
    hidden = torch.randn(BATCH, QUERIES, HIDDEN)
    expected, _ = reference(hidden, hidden, hidden)
    torch.testing.assert_close(six_heads(hidden)[0], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(source(hidden)[0], expected, atol=1e-3)
    # a projection replaced by name (as PEFT and quantisers do) is replaced in both modules
    source.v_proj = nn.Linear(HIDDEN, HIDDEN)
    assert six_heads.v_proj is source.v_proj
    with pytest.raises(ValueError, match="hidden_size"):
        MultiHeadAttention(2 * HIDDEN, HEADS, share_projections_with=source)
    with pytest.raises(ValueError, match="kdim"):
        MultiHeadAttention(HIDDEN, HEADS, kdim=7, share_projections_with=source)
