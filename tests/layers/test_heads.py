"""Heads against transformers' BERT MLM head and hand-written formulas; tied MLM decoders; output dataclasses."""

import pytest
import torch
from torch import nn
from transformers import BertConfig, PreTrainedConfig, PreTrainedModel
from transformers.models.bert.modeling_bert import BertLMPredictionHead

from vlzoo.layers.heads import BoxHead, ItmHead, MlmHead, MlpClassifierHead, NormalizedProjection
from vlzoo.layers.outputs import GroundingOutput, ImageTextMatchingOutput


def _randomize(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_mlp_classifier_head_keys_and_formula():
    head = MlpClassifierHead(6, 10, 3)
    _randomize(head, 0)
    assert set(head.state_dict()) == {f"{i}.{p}" for i in (0, 1, 3) for p in ("weight", "bias")}
    x = torch.randn(4, 6)
    hidden = nn.functional.layer_norm(head[0](x), (10,), head[1].weight, head[1].bias, 1e-5)
    torch.testing.assert_close(head(x), head[3](nn.functional.gelu(hidden)))
    with pytest.raises(ValueError, match="activation 'gelu2' is not a transformers ACT2FN name"):
        MlpClassifierHead(6, 10, 3, activation="gelu2")


def test_itm_head():
    head = ItmHead(6)
    x = torch.randn(4, 6)
    torch.testing.assert_close(head(x), x @ head.fc.weight.T + head.fc.bias)
    assert head(x).shape == (4, 2)


def test_mlm_head_equals_bert_prediction_head():
    torch.manual_seed(1)
    config = BertConfig(hidden_size=8, vocab_size=11, layer_norm_eps=1e-12)
    reference = BertLMPredictionHead(config)
    _randomize(reference, 1)
    head = MlmHead(8, 11)
    # transformers' head applies decoder.bias (tied to its `bias` inside BERT models); this head adds its own `bias`
    state = reference.state_dict()
    state["bias"] = state.pop("decoder.bias")
    head.load_state_dict(state)
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(head(x), reference(x))
    assert set(head.state_dict()) == {
        "transform.dense.weight",
        "transform.dense.bias",
        "transform.LayerNorm.weight",
        "transform.LayerNorm.bias",
        "decoder.weight",
        "bias",
    }


class _TinyMlmConfig(PreTrainedConfig):
    model_type = "vlzoo_test_tiny_mlm"

    def __init__(self, vocab_size: int = 13, hidden_size: int = 8, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        super().__init__(**kwargs)


class _TinyMlmModel(PreTrainedModel):
    config_class = _TinyMlmConfig
    _tied_weights_keys = {"mlm_head.decoder.weight": "word_embeddings.weight"}

    def __init__(self, config: _TinyMlmConfig):
        super().__init__(config)
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.mlm_head = MlmHead(config.hidden_size, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, MlmHead):
            nn.init.zeros_(module.bias)

    def get_input_embeddings(self) -> nn.Module:
        return self.word_embeddings

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.mlm_head(self.word_embeddings(input_ids))


@pytest.mark.parametrize("tie", [True, False])
def test_mlm_decoder_ties_through_tied_weights_keys(tie, tmp_path):
    torch.manual_seed(2)
    model = _TinyMlmModel(_TinyMlmConfig(tie_word_embeddings=tie))
    tied = model.mlm_head.decoder.weight is model.word_embeddings.weight
    assert tied == tie
    with torch.no_grad():
        model.word_embeddings.weight.normal_()
        model.mlm_head.bias.normal_()
    model.save_pretrained(tmp_path)
    loaded = _TinyMlmModel.from_pretrained(tmp_path)
    assert (loaded.mlm_head.decoder.weight is loaded.word_embeddings.weight) == tie
    ids = torch.tensor([[1, 5, 7]])
    torch.testing.assert_close(loaded(ids), model(ids))


def test_box_head_formula_keys_and_range():
    head = BoxHead(6, 5)
    _randomize(head, 3)
    assert set(head.state_dict()) == {f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")}
    assert [layer.out_features for layer in head.layers] == [5, 5, 4]
    x = torch.randn(7, 6)
    relu = nn.functional.relu
    expected = torch.sigmoid(head.layers[2](relu(head.layers[1](relu(head.layers[0](x))))))
    torch.testing.assert_close(head(x), expected)
    assert ((head(x * 100) >= 0) & (head(x * 100) <= 1)).all()
    with pytest.raises(ValueError, match="num_layers must be at least 1; got 0"):
        BoxHead(6, 5, num_layers=0)


def test_normalized_projection():
    projection = NormalizedProjection(6, 4)
    assert set(projection.state_dict()) == {"weight"}
    x = torch.randn(3, 6)
    output = projection(x)
    torch.testing.assert_close(output.norm(dim=-1), torch.ones(3))
    raw = x @ projection.weight.T
    torch.testing.assert_close(output, raw / raw.norm(dim=-1, keepdim=True))


def test_output_dataclasses_behave_like_model_outputs():
    boxes = torch.rand(2, 4)
    output = GroundingOutput(pred_boxes=boxes)
    assert output[0] is boxes and output.to_tuple() == (boxes,) and output.loss is None
    logits = torch.randn(2, 2)
    matching = ImageTextMatchingOutput(loss=torch.tensor(1.0), itm_logits=logits)
    assert matching["itm_logits"] is logits and len(matching.to_tuple()) == 2
