"""Poolers against transformers' BertPooler and hand-written means; patch embedding against explicit patch slicing."""

import pytest
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertPooler

from vlzoo.layers.patch_embedding import PatchEmbedding
from vlzoo.layers.poolers import FirstTokenPooler, MeanPooler


def test_first_token_pooler_equals_bert_pooler():
    torch.manual_seed(0)
    reference = BertPooler(BertConfig(hidden_size=12))
    pooler = FirstTokenPooler(12)
    pooler.load_state_dict(reference.state_dict())
    hidden = torch.randn(3, 5, 12)
    torch.testing.assert_close(pooler(hidden), reference(hidden))


def test_first_token_pooler_with_layer_norm():
    torch.manual_seed(1)
    hidden = torch.randn(3, 5, 12)
    pooler = FirstTokenPooler(12, layer_norm_eps=1e-5)
    nn.init.normal_(pooler.norm.weight)
    first = nn.functional.layer_norm(hidden[:, 0], (12,), pooler.norm.weight, pooler.norm.bias, 1e-5)
    # BEiT-3's VQA pooler: tanh(dense(norm(x[:, 0])))
    torch.testing.assert_close(pooler(hidden), torch.tanh(pooler.dense(first)))
    norm_only = FirstTokenPooler(12, layer_norm_eps=1e-5, dense=False)
    norm_only.norm.load_state_dict(pooler.norm.state_dict())
    torch.testing.assert_close(norm_only(hidden), first)
    assert set(norm_only.state_dict()) == {"norm.weight", "norm.bias"}
    with pytest.raises(ValueError, match="without dense needs layer_norm_eps"):
        FirstTokenPooler(12, dense=False)


def test_mean_pooler_ignores_padding():
    torch.manual_seed(2)
    hidden = torch.randn(3, 4, 6)
    keep = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]])
    pooled = MeanPooler()(hidden, keep)
    torch.testing.assert_close(pooled[0], hidden[0].mean(0))
    torch.testing.assert_close(pooled[1], (hidden[1, 0] + hidden[1, 2]) / 2)
    torch.testing.assert_close(pooled[2], torch.zeros(6))
    torch.testing.assert_close(MeanPooler()(hidden), hidden.mean(1))
    normed = MeanPooler(6, layer_norm_eps=1e-6)
    torch.testing.assert_close(normed(hidden), nn.functional.layer_norm(hidden.mean(1), (6,), eps=1e-6))
    with pytest.raises(ValueError, match=r"attention_mask must have shape \(3, 4\)"):
        MeanPooler()(hidden, keep[:, :3])
    with pytest.raises(ValueError, match="needs hidden_size"):
        MeanPooler(layer_norm_eps=1e-6)


def test_patch_embedding_on_a_non_square_image_is_row_major():
    torch.manual_seed(3)
    embedding = PatchEmbedding(3, 8, 4, image_size=(8, 12))
    pixels = torch.randn(2, 3, 8, 12)
    tokens = embedding(pixels)
    assert tokens.shape == (2, 6, 8) and embedding.grid_size(8, 12) == (2, 3)
    weight = embedding.projection.weight.reshape(8, -1)
    for row in range(2):
        for column in range(3):
            patch = pixels[:, :, 4 * row : 4 * row + 4, 4 * column : 4 * column + 4].reshape(2, -1)
            expected = patch @ weight.T + embedding.projection.bias
            torch.testing.assert_close(tokens[:, 3 * row + column], expected, atol=1e-5, rtol=1e-5)
    grid = PatchEmbedding(3, 8, 4, flatten=False)
    grid.load_state_dict(embedding.state_dict())
    torch.testing.assert_close(grid(pixels).flatten(2).transpose(1, 2), tokens)


def test_patch_embedding_errors_and_interpolation():
    embedding = PatchEmbedding(3, 8, 4, image_size=8)
    with pytest.raises(ValueError, match="input image size 12x8 does not match the model's 8x8; .*interpolate_pos"):
        embedding(torch.randn(1, 3, 12, 8))
    assert embedding(torch.randn(1, 3, 12, 8), interpolate_pos_encoding=True).shape == (1, 6, 8)
    free = PatchEmbedding(3, 8, 4)
    with pytest.raises(ValueError, match="input image size 10x8 is not a multiple of the patch size 4x4"):
        free(torch.randn(1, 3, 10, 8))
    assert free(torch.randn(1, 3, 10, 8), interpolate_pos_encoding=True).shape == (1, 4, 8)
    with pytest.raises(ValueError, match="pixel_values has 4 channels; this patch embedding expects 3"):
        free(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match=r"pixel_values must have shape \[batch, channels, height, width\]"):
        free(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match=r"image_size \(10, 10\) is not a multiple of patch_size \(4, 4\)"):
        PatchEmbedding(3, 8, 4, image_size=10)
    half = PatchEmbedding(3, 8, 4).to(torch.bfloat16)
    assert half(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
