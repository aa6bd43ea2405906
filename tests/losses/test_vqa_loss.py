"""VQA soft-target BCE: mean over the batch of the sum over answers."""

import math

import pytest
import torch

from vlzoo.losses import VqaSoftTargetLoss, vqa_soft_target_loss


def test_matches_sum_over_answers_mean_over_batch():
    logits = torch.tensor([[1.5, -0.3, 0.0], [-2.0, 0.7, 3.1]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.3, 0.0], [0.0, 0.6, 0.9]], dtype=torch.float64)
    per_question = []
    for logit_row, target_row in zip(logits.tolist(), targets.tolist(), strict=True):
        total = 0.0
        for x, y in zip(logit_row, target_row, strict=True):
            p = 1 / (1 + math.exp(-x))
            total -= y * math.log(p) + (1 - y) * math.log(1 - p)
        per_question.append(total)
    expected = sum(per_question) / len(per_question)
    assert vqa_soft_target_loss(logits, targets).item() == pytest.approx(expected, abs=1e-12)
    assert VqaSoftTargetLoss()(logits, targets).item() == pytest.approx(expected, abs=1e-12)


def test_meter_released_vqa_loss(fixture_io):
    io = fixture_io("meter/meter-vqa-tiny")
    loss = vqa_soft_target_loss(io["output.vqa_logits"], io["input.vqa_targets"])
    torch.testing.assert_close(loss, io["output.vqa_loss"], atol=1e-5, rtol=0)


def test_input_errors():
    with pytest.raises(ValueError, match=r"logits must have shape \[batch, answers\]"):
        vqa_soft_target_loss(torch.randn(3), torch.rand(3))
    with pytest.raises(ValueError, match=r"targets must have the shape of logits \(2, 4\); got \(2, 5\)"):
        vqa_soft_target_loss(torch.randn(2, 4), torch.rand(2, 5))
    with pytest.raises(TypeError, match="floating-point"):
        vqa_soft_target_loss(torch.randn(2, 4), torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]; got values in \[0.0, 3.0\]"):
        vqa_soft_target_loss(torch.randn(2, 2), torch.tensor([[0.0, 1.0], [3.0, 0.5]]))
