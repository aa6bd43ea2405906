"""Optional oracle: torchscale's `BEiT3` (PyPI torchscale 0.3.0, not a vlzoo dependency) with random weights at a
geometry the fixtures do not cover, saved as an original checkpoint, converted by `vlzoo convert beit3`'s converter;
the joint, vision-only and text-only passes agree. Skipped where torchscale is not installed."""

import importlib.util
import sys
import types

import pytest
import torch

from vlzoo.conversion import convert_checkpoint
from vlzoo.models.beit3 import Beit3Model
from vlzoo.models.beit3.conversion_beit3 import Beit3Converter

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchscale") is None,
    reason="torchscale is not installed (pip install torchscale==0.3.0)",
)


def _import_torchscale():
    """torchscale imports only `timm.models.layers.drop_path` (the identity at inference); timm 0.6 needs
    torchvision, so where timm does not import, that function is provided here."""
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
            del sys.modules[name]
        for name in ("timm", "timm.models", "timm.models.layers"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["timm.models.layers"].drop_path = lambda x, drop_prob=0.0, training=False: x
    from torchscale.architecture.config import EncoderConfig
    from torchscale.model.BEiT3 import BEiT3

    return EncoderConfig, BEiT3


def test_converted_torchscale_beit3_matches(tmp_path):
    EncoderConfig, BEiT3 = _import_torchscale()
    args = EncoderConfig(
        img_size=64, patch_size=16, vocab_size=77, multiway=True, layernorm_embedding=False, normalize_output=True,
        no_output_layer=True, drop_path_rate=0.0, encoder_embed_dim=40, encoder_attention_heads=5,
        encoder_ffn_embed_dim=72, encoder_layers=3, max_source_positions=30,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = BEiT3(args).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(0.3 * torch.randn_like(parameter) + (1.0 if parameter.dim() == 1 else 0.0))
    checkpoint = tmp_path / "beit3_tiny.pth"
    torch.save({"model": {f"beit3.{k}": v for k, v in reference.state_dict().items()}}, checkpoint)
    original = {"encoder_config": {"encoder_attention_heads": 5}}
    convert_checkpoint(Beit3Converter(), checkpoint, tmp_path / "out", original_config=original)
    model = Beit3Model.from_pretrained(tmp_path / "out").eval()
    ids = torch.tensor([[0, 5, 9, 33, 2, 1, 1], [0, 7, 70, 12, 40, 8, 2]])
    mask = (ids != 1).long()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        cases = {
            "joint": (dict(textual_tokens=ids, visual_tokens=pixels, text_padding_position=mask == 0),
                      dict(input_ids=ids, attention_mask=mask, pixel_values=pixels)),
            "vision": (dict(visual_tokens=pixels), dict(pixel_values=pixels)),
            "text": (dict(textual_tokens=ids, text_padding_position=mask == 0), dict(input_ids=ids, attention_mask=mask)),
        }  # fmt: skip
        for name, (original_inputs, inputs) in cases.items():
            expected = reference(**original_inputs)["encoder_out"]
            actual = model(**inputs).last_hidden_state
            assert actual.shape == expected.shape, name
            assert (actual - expected).abs().max() <= 1e-4, (name, (actual - expected).abs().max())
