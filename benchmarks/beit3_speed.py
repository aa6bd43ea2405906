"""vlzoo's BEiT-3 against torchscale's `BEiT3` (the original backbone) on the same weights: forward time and ratio.

A base-size torchscale `BEiT3` (the released `_get_base_config`: 12 layers, width 768, 12 heads, FFN 3072, 224 px,
patch 16, vocabulary 64010, final multiway LayerNorm; random weights with non-trivial LayerNorms) is saved as an
original checkpoint (`{'model': {'beit3.…': …}}`), converted with vlzoo's BEiT-3 converter (the `vlzoo convert beit3`
path) and loaded as `vlzoo.Beit3Model`. Both run the joint image + text pass on the same batch (batch 8, 224 px
images, 32-token texts of different lengths with their padding mask) in fp32 and under bf16 autocast. Repetitions are
interleaved (torchscale, vlzoo, torchscale, ...) in one process so that other load on the machine hits both alike;
the script prints the median seconds per forward and the ratio torchscale / vlzoo (above 1: vlzoo is faster), per
repetition pair as median and range. Outputs are checked to agree before any timing.

    pip install torchscale==0.3.0   # not a vlzoo dependency; `timm` is only needed for its drop_path (see below)
    nice python benchmarks/beit3_speed.py [--batch 8] [--repeats 7] [--device cpu|cuda] [--attention sdpa|eager]

torchscale imports `timm.models.layers.drop_path` (stochastic depth, the identity at inference). When timm cannot be
imported (timm 0.6 needs torchvision), the script provides that one function itself and says so.
"""

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

import vlzoo  # noqa: F401
from vlzoo.conversion import convert_checkpoint
from vlzoo.models.beit3 import Beit3Model
from vlzoo.models.beit3.conversion_beit3 import Beit3Converter

TEXT_LENGTH = 32
VOCAB_SIZE = 64010


def _drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, *args, **kwargs) -> torch.Tensor:
    if drop_prob == 0.0 or not training:
        return x
    raise RuntimeError("this stand-in for timm's drop_path serves inference only")


def import_torchscale() -> tuple[type, type, bool]:
    """torchscale's `EncoderConfig` and `BEiT3`, and whether timm's drop_path had to be provided here."""
    stubbed = False
    try:
        import timm.models.layers  # noqa: F401
    except ImportError:
        for name in [name for name in sys.modules if name == "timm" or name.startswith("timm.")]:
            del sys.modules[name]
        for name in ("timm", "timm.models", "timm.models.layers"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["timm.models.layers"].drop_path = _drop_path
        stubbed = True
    try:
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3
    except ImportError as error:
        raise SystemExit(
            f"torchscale is not importable here ({error}); install it with: pip install torchscale==0.3.0"
        ) from None
    return EncoderConfig, BEiT3, stubbed


def build_models(workdir: Path, seed: int = 0) -> tuple[torch.nn.Module, Beit3Model, bool]:
    """A random base-size torchscale BEiT3 and the vlzoo model converted from its checkpoint file."""
    EncoderConfig, BEiT3, stubbed = import_torchscale()
    args = EncoderConfig(
        img_size=224, patch_size=16, vocab_size=VOCAB_SIZE, multiway=True, layernorm_embedding=False,
        normalize_output=True, no_output_layer=True, drop_path_rate=0.0, encoder_embed_dim=768,
        encoder_attention_heads=12, encoder_ffn_embed_dim=3072, encoder_layers=12, checkpoint_activations=False,
    )  # fmt: skip
    torch.manual_seed(seed)
    reference = BEiT3(args).eval()
    with torch.no_grad():  # non-trivial LayerNorms and position tables, as in a trained model
        for name, parameter in reference.named_parameters():
            if any(part in name for part in ("layer_norm", "inner_attn_ln", "ffn_layernorm")):
                parameter.add_(0.1 * torch.randn_like(parameter))
            elif "embed_positions" in name:
                parameter.mul_(0.02 / parameter.std())
    checkpoint = workdir / "beit3_base_patch16_224.pth"
    torch.save({"model": {f"beit3.{key}": value for key, value in reference.state_dict().items()}}, checkpoint)
    convert_checkpoint(Beit3Converter(), checkpoint, workdir / "vlzoo", variant="base")
    model = Beit3Model.from_pretrained(workdir / "vlzoo").eval()
    return reference, model, stubbed


def make_inputs(batch: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Images and `<s> … </s>` texts of lengths from 8 to 32 tokens, right-padded with `<pad>` (id 1)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((batch, TEXT_LENGTH), 1, dtype=torch.long)
    mask = torch.zeros(batch, TEXT_LENGTH, dtype=torch.long)
    for row in range(batch):
        length = TEXT_LENGTH - (row * 24 // max(batch - 1, 1))
        ids[row, 0], ids[row, length - 1] = 0, 2
        ids[row, 1 : length - 1] = torch.randint(4, 64000, (length - 2,), generator=generator)
        mask[row, :length] = 1
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": torch.randn(batch, 3, 224, 224, generator=generator),
    }


def runners(reference: torch.nn.Module, model: Beit3Model, inputs: dict[str, torch.Tensor]):
    padding = inputs["attention_mask"] == 0

    def torchscale() -> torch.Tensor:
        return reference(
            textual_tokens=inputs["input_ids"], visual_tokens=inputs["pixel_values"], text_padding_position=padding
        )["encoder_out"]

    def ours() -> torch.Tensor:
        return model(**inputs).last_hidden_state

    return {"torchscale": torchscale, "vlzoo": ours}


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(run, device: torch.device, dtype: str, repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    context = torch.autocast(device.type, dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    times: dict[str, list[float]] = {name: [] for name in run}
    with torch.inference_mode(), context:
        for index in range(warmup + repeats):
            for name, forward in run.items():
                _synchronize(device)
                start = time.perf_counter()
                forward()
                _synchronize(device)
                if index >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--attention", choices=("sdpa", "eager"), default="sdpa", help="vlzoo's attention kernel")
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    options = parser.parse_args(argv)
    device = torch.device(options.device)
    with tempfile.TemporaryDirectory(prefix="beit3-speed-") as workdir:
        reference, model, stubbed = build_models(Path(workdir))
    model.set_attn_implementation(options.attention)
    reference, model = reference.to(device), model.to(device)
    inputs = {key: value.to(device) for key, value in make_inputs(options.batch).items()}
    run = runners(reference, model, inputs)
    with torch.inference_mode():
        difference = (run["torchscale"]().float() - run["vlzoo"]().float()).abs().max().item()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"BEiT-3 base joint forward, batch {options.batch}, 224 px + {TEXT_LENGTH} tokens, {name}; vlzoo "
          f"attention {options.attention}; torch {torch.__version__}; fp32 max |diff| {difference:.2e}"
          + ("; timm's drop_path provided by this script" if stubbed else ""))  # fmt: skip
    if difference > 1e-3:
        raise SystemExit(f"the two models disagree (max |diff| {difference}); timings would compare different work")
    for dtype in options.dtypes.split(","):
        times = time_interleaved(run, device, dtype, options.repeats)
        ratios = [a / b for a, b in zip(times["torchscale"], times["vlzoo"], strict=True)]
        print(
            f"{dtype}: torchscale {statistics.median(times['torchscale']):.3f} s, vlzoo "
            f"{statistics.median(times['vlzoo']):.3f} s per forward (median of {options.repeats}); ratio "
            f"torchscale/vlzoo {statistics.median(ratios):.2f} (pairs {min(ratios):.2f}..{max(ratios):.2f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
