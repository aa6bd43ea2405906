"""FreezableBatchNorm2d: frozen affine parameters freeze the running statistics; otherwise an ordinary BatchNorm."""

import copy

import pytest
import torch
from torch import nn

from vlzoo.layers.norms import FreezableBatchNorm2d


def _trained_statistics(norm: nn.BatchNorm2d) -> nn.BatchNorm2d:
    """A norm whose running statistics are far from a fresh one's, as after pre-training."""
    torch.manual_seed(0)
    norm.train()
    with torch.no_grad():
        for _ in range(5):
            norm(torch.randn(8, norm.num_features, 5, 5) * 3 + 2)
    return norm


def test_frozen_parameters_use_and_keep_the_running_statistics_in_train_mode():
    norm = _trained_statistics(FreezableBatchNorm2d(4))
    norm.requires_grad_(False)
    before = {name: buffer.clone() for name, buffer in norm.named_buffers()}
    features = torch.randn(6, 4, 5, 5, requires_grad=True)
    in_train = norm.train()(features)
    in_eval = norm.eval()(features)
    torch.testing.assert_close(in_train, in_eval, rtol=0, atol=0)
    for name, buffer in norm.named_buffers():
        assert torch.equal(buffer, before[name]), name
    in_train.sum().backward()  # the input still gets gradients (the layers before it may train)
    assert features.grad is not None


def test_trainable_parameters_give_an_ordinary_batch_norm():
    norm = _trained_statistics(FreezableBatchNorm2d(4))
    plain = _trained_statistics(nn.BatchNorm2d(4))
    features = torch.randn(6, 4, 5, 5)
    torch.testing.assert_close(norm.train()(features), plain.train()(features))
    torch.testing.assert_close(norm.running_mean, plain.running_mean)
    assert not torch.allclose(norm.eval()(features), norm.train()(features))


@pytest.mark.parametrize("frozen", ["weight", "bias"])
def test_one_trainable_affine_parameter_keeps_batch_statistics(frozen):
    norm = _trained_statistics(FreezableBatchNorm2d(4))
    getattr(norm, frozen).requires_grad_(False)
    assert not norm.statistics_frozen
    before = norm.running_mean.clone()
    norm.train()(torch.randn(6, 4, 5, 5))
    assert not torch.equal(norm.running_mean, before)


def test_without_affine_parameters_or_running_statistics_it_is_plain():
    for kwargs in ({"affine": False}, {"track_running_stats": False}):
        norm = FreezableBatchNorm2d(4, **kwargs).requires_grad_(False)
        assert not norm.statistics_frozen
        plain = nn.BatchNorm2d(4, **kwargs)
        features = torch.randn(6, 4, 5, 5)
        torch.testing.assert_close(norm.train()(features), plain.train()(features))


def test_state_dict_keys_match_batch_norm():
    assert FreezableBatchNorm2d(3).state_dict().keys() == nn.BatchNorm2d(3).state_dict().keys()
    copy.deepcopy(FreezableBatchNorm2d(3)).load_state_dict(nn.BatchNorm2d(3).state_dict())
