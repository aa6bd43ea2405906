"""contrastive_loss against a hand-written loop, the released FLAVA/BEiT-3 losses, and its input checks."""

import math

import pytest
import torch
import torch.nn.functional as F

from vlzoo.losses import ContrastiveLoss, contrastive_loss


def _loop_reference(image_embeds, text_embeds, scale: float) -> float:
    """Symmetric InfoNCE written out element by element in Python floats."""
    images, texts = image_embeds.tolist(), text_embeds.tolist()
    batch = len(images)

    def dot(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True))

    total = 0.0
    for i in range(batch):
        image_row = [scale * dot(images[i], texts[j]) for j in range(batch)]
        text_row = [scale * dot(texts[i], images[j]) for j in range(batch)]
        for row in (image_row, text_row):
            log_normaliser = math.log(sum(math.exp(value) for value in row))
            total += (log_normaliser - row[i]) / 2
    return total / batch


def _embeds(batch=5, dim=7, seed=0):
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(batch, dim, generator=generator, dtype=torch.float64), dim=-1)
    text = F.normalize(torch.randn(batch, dim, generator=generator, dtype=torch.float64), dim=-1)
    return image, text


def test_matches_loop_reference():
    image, text = _embeds()
    loss = contrastive_loss(image, text, torch.tensor(6.5, dtype=torch.float64))
    assert loss.item() == pytest.approx(_loop_reference(image, text, 6.5), abs=1e-10)


def test_gradient_reaches_logit_scale_parameter():
    image, text = _embeds()
    log_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07), dtype=torch.float64))
    contrastive_loss(image, text, log_scale.exp()).backward()
    assert log_scale.grad is not None and log_scale.grad.abs().item() > 0
    # Central finite difference of the independent loop.
    step = 1e-6
    upper = _loop_reference(image, text, math.exp(log_scale.item() + step))
    lower = _loop_reference(image, text, math.exp(log_scale.item() - step))
    assert log_scale.grad.item() == pytest.approx((upper - lower) / (2 * step), abs=1e-6)


def test_gradient_reaches_embeddings():
    image, text = _embeds()
    image.requires_grad_(True)
    contrastive_loss(image, text, torch.tensor(4.0, dtype=torch.float64)).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0


def test_single_process_gather_changes_nothing_and_module_matches():
    image, text = _embeds()
    scale = torch.tensor(2.0, dtype=torch.float64)
    gathered = contrastive_loss(image, text, scale, gather=True)
    torch.testing.assert_close(gathered, contrastive_loss(image, text, scale, gather=False))
    torch.testing.assert_close(ContrastiveLoss()(image, text, scale), gathered)
    assert "gather=False" in repr(ContrastiveLoss(gather=False))


def test_flava_released_contrastive_loss(fixture_io):
    io = fixture_io("flava/flava-model-tiny")
    loss = contrastive_loss(io["output.image_embeds"], io["output.text_embeds"], io["output.logit_scale"].exp())
    torch.testing.assert_close(loss, io["output.contrastive_loss"], atol=1e-5, rtol=0)


def test_beit3_released_clip_loss(fixture_io):
    io = fixture_io("beit3/beit3-retrieval-tiny")
    # beit3-retrieval-tiny/README.md: logit_scale = log(1/0.07) - 0.25.
    scale = torch.tensor(math.exp(math.log(1 / 0.07) - 0.25))
    torch.testing.assert_close(
        scale * io["output.vision_cls"] @ io["output.language_cls"].T, io["output.logits_per_image"], atol=1e-4, rtol=0
    )
    loss = contrastive_loss(io["output.vision_cls"], io["output.language_cls"], scale)
    torch.testing.assert_close(loss, io["output.loss"], atol=1e-5, rtol=0)


def test_batch_mismatch_message():
    image, _ = _embeds(batch=4)
    _, text = _embeds(batch=3)
    with pytest.raises(ValueError, match="image_embeds has batch size 4 but text_embeds has 3"):
        contrastive_loss(image, text, torch.tensor(1.0))


@pytest.mark.parametrize(
    ("image_shape", "text_shape", "match"),
    [
        ((3, 4, 2), (3, 8), "image_embeds must be 2-D"),
        ((3, 4), (3,), "text_embeds must be 2-D"),
        ((3, 4), (3, 5), "dim 4"),
    ],
)
def test_shape_errors(image_shape, text_shape, match):
    with pytest.raises(ValueError, match=match):
        contrastive_loss(torch.randn(image_shape), torch.randn(text_shape), torch.tensor(1.0))


def test_logit_scale_errors():
    image, text = _embeds()
    with pytest.raises(TypeError, match="logit_scale must be a scalar tensor.*float"):
        contrastive_loss(image, text, 10.0)
    with pytest.raises(ValueError, match=r"logit_scale must hold one value; got shape \(2,\)"):
        contrastive_loss(image, text, torch.ones(2))
