"""MS-CLIP-S vs the vanilla CLIP baseline, SDPA vs eager, fp32 vs bf16: throughput ratios measured in one run.

Also checks, on the same inputs, that SDPA agrees with eager attention and bf16 with fp32, and that a bf16-autocast
training step gives finite gradients. Runs on CUDA when available, else on CPU (use `--small` there).

    python benchmarks/ms_clip_throughput.py [--small] [--batch 128] [--json out.json]
"""

import argparse
import json
import time

import torch

import vlzoo  # noqa: F401
from vlzoo.demo import demo_config
from vlzoo.models.ms_clip import MsClipConfig, MsClipModel


def build(preset: str, small: bool, device: torch.device) -> MsClipModel:
    """A released-size model from `preset`, or the demo-sized one of the same kind (`vlzoo demo`'s models)."""
    torch.manual_seed(0)
    if small:
        config = demo_config("vanilla" if preset == "vanilla" else "ms_clip")
    else:
        config = MsClipConfig.from_preset(preset)
    return MsClipModel(config).to(device).eval()


def inputs(model: MsClipModel, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    size = model.config.vision_config.image_size
    text = model.config.text_config
    ids = torch.randint(1, text.bos_token_id, (batch, 32), generator=generator)
    ids[:, 0], ids[:, -1] = text.bos_token_id, text.eos_token_id
    pixels = torch.randn(batch, 3, size, size, generator=generator)
    return {"input_ids": ids.to(device), "pixel_values": pixels.to(device)}


def timed(fn, device: torch.device, repeats: int) -> float:
    """Seconds per call: the median of `repeats` timed calls after two warm-up calls."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def forward_time(model, batch, device, attn: str, dtype: torch.dtype, repeats: int) -> float:
    model.config._attn_implementation = attn
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        return timed(lambda: model(**batch), device, repeats)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", action="store_true", help="the demo-sized models instead of the released sizes")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch_size = args.batch or (128 if device.type == "cuda" else 16)
    low = torch.bfloat16
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "torch": torch.__version__, "batch": batch_size, "sizes": "demo" if args.small else "released"}  # fmt: skip

    for preset in ("b32-yfcc", "vanilla"):
        model = build(preset, args.small, device)
        batch = inputs(model, batch_size, device)
        with torch.no_grad():
            model.config._attn_implementation = "eager"
            eager = model(**batch)
            model.config._attn_implementation = "sdpa"
            sdpa = model(**batch)
            with torch.autocast(device.type, dtype=low):
                half = model(**batch)
        entry = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "sdpa_vs_eager_max_abs_diff_logits": float((sdpa.logits_per_image - eager.logits_per_image).abs().max()),
            "bf16_vs_fp32_min_cosine_image_embeds": float(
                torch.nn.functional.cosine_similarity(half.image_embeds.float(), eager.image_embeds).min()
            ),
            "seconds_fp32_eager": forward_time(model, batch, device, "eager", torch.float32, args.repeats),
            "seconds_fp32_sdpa": forward_time(model, batch, device, "sdpa", torch.float32, args.repeats),
            "seconds_bf16_sdpa": forward_time(model, batch, device, "sdpa", low, args.repeats),
        }
        model.train()
        model.config._attn_implementation = "sdpa"
        with torch.autocast(device.type, dtype=low):
            loss = model(**batch, return_loss=True).loss
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        entry["bf16_train_step_loss"] = loss.detach().item()
        entry["bf16_train_step_grads_finite"] = all(bool(torch.isfinite(g).all()) for g in grads)
        entry["pairs_per_second_bf16_sdpa"] = batch_size / entry["seconds_bf16_sdpa"]
        report[preset] = entry
        del model

    ms, va = report["b32-yfcc"], report["vanilla"]
    report["ratios"] = {
        "ms_clip_over_vanilla_time_bf16_sdpa": ms["seconds_bf16_sdpa"] / va["seconds_bf16_sdpa"],
        "ms_clip_eager_over_sdpa_time_fp32": ms["seconds_fp32_eager"] / ms["seconds_fp32_sdpa"],
        "ms_clip_fp32_over_bf16_time_sdpa": ms["seconds_fp32_sdpa"] / ms["seconds_bf16_sdpa"],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(text + "\n")
    return report


if __name__ == "__main__":
    main()
