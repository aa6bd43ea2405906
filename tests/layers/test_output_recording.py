"""A tiny PreTrainedModel built from TransformerLayer: hidden states and (cross-)attentions come out through
transformers' output recording, `set_attn_implementation` reaches every attention, checkpointing keeps gradients."""

import pytest
import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithCrossAttentions
from transformers.utils.generic import merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from vlzoo.layers.attention import MultiHeadAttention
from vlzoo.layers.masks import key_padding_attention_mask
from vlzoo.layers.transformer import TransformerLayer

HIDDEN, HEADS, LAYERS, BATCH, LENGTH, MEMORY = 12, 3, 2, 2, 5, 4


class _TinyFusionConfig(PreTrainedConfig):
    model_type = "vlzoo_test_tiny_fusion"

    def __init__(self, hidden_size: int = HIDDEN, num_hidden_layers: int = LAYERS, **kwargs):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        super().__init__(**kwargs)


class _TinyFusionModel(PreTrainedModel):
    config_class = _TinyFusionConfig
    main_input_name = "inputs_embeds"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _no_split_modules = ["TransformerLayer"]
    _can_record_outputs = {
        "hidden_states": TransformerLayer,
        "attentions": OutputRecorder(MultiHeadAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(MultiHeadAttention, index=1, layer_name="cross_attn"),
    }

    def __init__(self, config: _TinyFusionConfig):
        super().__init__(config)
        self.layers = nn.ModuleList(
            TransformerLayer(config.hidden_size, HEADS, 20, cross_attention=True, config=config)
            for _ in range(config.num_hidden_layers)
        )
        self.post_init()

    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        inputs_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithCrossAttentions:
        mask = None
        if encoder_attention_mask is not None:
            mask = key_padding_attention_mask(encoder_attention_mask, dtype=inputs_embeds.dtype)
        hidden_states = inputs_embeds
        for layer in self.layers:
            hidden_states = layer(hidden_states, None, encoder_hidden_states, mask, **kwargs)
        return BaseModelOutputWithCrossAttentions(last_hidden_state=hidden_states)


def _inputs():
    generator = torch.Generator().manual_seed(0)
    keep = torch.ones(BATCH, MEMORY, dtype=torch.long)
    keep[1, -1] = 0
    return {
        "inputs_embeds": torch.randn(BATCH, LENGTH, HIDDEN, generator=generator),
        "encoder_hidden_states": torch.randn(BATCH, MEMORY, HIDDEN, generator=generator),
        "encoder_attention_mask": keep,
    }


def _model() -> _TinyFusionModel:
    torch.manual_seed(0)
    return _TinyFusionModel(_TinyFusionConfig()).eval()


def _weights_by_hand(attention: MultiHeadAttention, queries, keys, mask=None) -> torch.Tensor:
    def heads(x):
        return x.view(BATCH, -1, HEADS, HIDDEN // HEADS).transpose(1, 2)

    scores = heads(attention.q_proj(queries)) @ heads(attention.k_proj(keys)).transpose(-1, -2)
    scores = scores / (HIDDEN // HEADS) ** 0.5
    return (scores if mask is None else scores + mask).softmax(-1)


def test_hidden_states_and_attentions_are_recorded():
    model = _model()
    model.set_attn_implementation("eager")
    inputs = _inputs()
    output = model(**inputs, output_hidden_states=True, output_attentions=True)

    # the same layers run by hand
    states = [inputs["inputs_embeds"]]
    mask = key_padding_attention_mask(inputs["encoder_attention_mask"], dtype=torch.float32)
    expected_self, expected_cross = [], []
    for layer in model.layers:
        x = states[-1]
        normed = layer.layer_norm1(x)
        expected_self.append(_weights_by_hand(layer.self_attn, normed, normed))
        after_self = x + layer.self_attn(normed)[0]
        expected_cross.append(
            _weights_by_hand(
                layer.cross_attn, layer.cross_attn_layer_norm(after_self), inputs["encoder_hidden_states"], mask
            )
        )
        states.append(layer(x, None, inputs["encoder_hidden_states"], mask))

    assert len(output.hidden_states) == LAYERS + 1
    for got, expected in zip(output.hidden_states, states, strict=True):
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(output.last_hidden_state, states[-1])
    assert len(output.attentions) == len(output.cross_attentions) == LAYERS
    for got, expected in zip(output.attentions, expected_self, strict=True):
        assert got.shape == (BATCH, HEADS, LENGTH, LENGTH)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    for got, expected in zip(output.cross_attentions, expected_cross, strict=True):
        assert got.shape == (BATCH, HEADS, LENGTH, MEMORY)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert (output.cross_attentions[0][1, :, :, -1] == 0).all()  # the padded memory position gets no weight


def test_set_attn_implementation_reaches_every_attention():
    model = _model()
    inputs = _inputs()
    assert model.config._attn_implementation == "sdpa"
    sdpa = model(**inputs, output_attentions=True)
    assert sdpa.attentions == ()  # sdpa returns no weights, as in transformers
    model.set_attn_implementation("eager")
    eager = model(**inputs, output_attentions=True)
    assert len(eager.attentions) == LAYERS
    torch.testing.assert_close(sdpa.last_hidden_state, eager.last_hidden_state, atol=1e-5, rtol=1e-5)
    assert all(m.config is model.config for m in model.modules() if isinstance(m, MultiHeadAttention))


def test_return_dict_false_gives_a_tuple():
    model = _model()
    output = model(**_inputs(), output_hidden_states=True, return_dict=False)
    assert isinstance(output, tuple) and len(output) == 2 and len(output[1]) == LAYERS + 1


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing_keeps_the_gradients(use_reentrant):
    model = _model().train()
    inputs = _inputs()
    # as the output of an embedding layer would; reentrant checkpointing needs an input that requires grad
    inputs["inputs_embeds"].requires_grad_()

    def gradients():
        model.zero_grad()
        model(**inputs).last_hidden_state.pow(2).sum().backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    plain = gradients()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    assert all(layer.gradient_checkpointing for layer in model.layers)
    checkpointed = gradients()
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)
