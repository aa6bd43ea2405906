"""TransVG++ forward speed on the CPU: sdpa against eager attention, fp32 and bf16, and the fraction of GEMM peak.

The model is TransVG++ at the paper's ViT-B/16 size (preset `base`: 768 wide, 12 heads, 12 blocks, language blocks
2/5/8/11 cross-attending to BERT-base, 640 px canvas = 1600 patches + [REG]; random weights), batch 4, 20-token
expressions of different lengths. The same weights are loaded into two copies, one with `attn_implementation="sdpa"`
(vlzoo's default) and one with `"eager"`; their boxes are checked to agree before any timing. Repetitions are
interleaved (sdpa, eager, eager, sdpa, ...) in one process, in fp32 and under bf16 autocast, so other load on the
machine hits both alike. Printed: median seconds per forward, the ratio eager / sdpa (> 1: sdpa faster; median
and range of the per-repetition ratios), and the fraction of this machine's GEMM peak each forward reaches (its
FLOPs counted with `torch.utils.flop_counter`, per second, over the best rate of a large matmul in the same dtype
measured at the start and at the end of the run).

    nice python benchmarks/transvg_pp_speed.py [--batch 4] [--repeats 3] [--image-size 640] [--json out.json]
"""

import argparse
import copy
import json
import time
from collections.abc import Callable

import torch
from speed_common import autocast, count_flops, gemm_peak, spread
from torch import nn

from vlzoo.models.transvg_pp import TransvgPlusPlusConfig, TransvgPlusPlusForVisualGrounding

QUERY_LENGTH = 20
ATTENTION = ("sdpa", "eager")


def build_models(image_size: int, seed: int = 0) -> dict[str, TransvgPlusPlusForVisualGrounding]:
    """The `base` preset with the same random weights under each attention implementation."""
    torch.manual_seed(seed)
    config = TransvgPlusPlusConfig.from_preset("base", image_size=image_size)
    models = {}
    for name in ATTENTION:
        own = copy.deepcopy(config)  # _from_config sets the implementation on the config it is given
        models[name] = TransvgPlusPlusForVisualGrounding._from_config(own, attn_implementation=name).eval()
    with torch.no_grad():  # non-trivial LayerNorms, as in a trained model
        for key, parameter in models["sdpa"].named_parameters():
            if "norm" in key.lower():
                parameter.add_(0.05 * torch.randn_like(parameter))
    models["eager"].load_state_dict(models["sdpa"].state_dict())
    for name, model in models.items():
        assert model.config._attn_implementation == name, (name, model.config._attn_implementation)
    return models


def make_inputs(batch: int, image_size: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """`[CLS] words [SEP]` padded with 0 to 20 tokens (lengths 6..20), random letterboxed images with pixel masks."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, QUERY_LENGTH), generator=generator)
    lengths = torch.randint(6, QUERY_LENGTH + 1, (batch,), generator=generator)
    lengths[0] = QUERY_LENGTH
    mask = (torch.arange(QUERY_LENGTH)[None] < lengths[:, None]).long()
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    ids = ids * mask
    pixels = torch.randn(batch, 3, image_size, image_size, generator=generator)
    pixel_mask = torch.ones(batch, image_size, image_size, dtype=torch.long)
    pixel_mask[1::2, : image_size // 4] = 0  # wide images: padding above (read only with use_visual_mask)
    pixels = pixels * pixel_mask[:, None]
    return {"pixel_values": pixels, "pixel_mask": pixel_mask, "input_ids": ids, "attention_mask": mask}


def forward_fn(model: nn.Module, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """One full forward as a user runs it (inference mode, autocast entered per call); returns `pred_boxes`."""

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast(dtype):
            return model(**inputs).pred_boxes

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per attention and dtype")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]

    models = build_models(args.image_size)
    inputs = make_inputs(args.batch, args.image_size)
    config = models["sdpa"].config
    report: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "image_size": args.image_size,
        "tokens": 1 + config.grid_size**2,
        "query_length": QUERY_LENGTH,
        "repeats": args.repeats,
        "parameters": sum(p.numel() for p in models["sdpa"].parameters()),
    }
    peaks_before = {str(d): gemm_peak(d) for d in dtypes}
    flops = None
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        runs = {key: forward_fn(model, inputs, dtype) for key, model in models.items()}
        diff = float((runs["sdpa"]().float() - runs["eager"]().float()).abs().max())
        if flops is None:
            flops = count_flops(runs["eager"])  # the same matmuls as sdpa's, counted explicitly
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        times: dict[str, list[float]] = {key: [] for key in runs}
        for repeat in range(args.repeats):
            for key in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
                start = time.perf_counter()
                runs[key]()
                times[key].append(time.perf_counter() - start)
        ratios = [e / s for e, s in zip(times["eager"], times["sdpa"], strict=True)]
        report[name] = {
            "max_abs_diff_pred_boxes": diff,
            "seconds": {key: spread(values) for key, values in times.items()},
            "ratio_per_pair": spread(ratios),
        }
    peaks_after = {str(d): gemm_peak(d) for d in dtypes}
    report["flops"] = flops
    print(
        f"TransVG++ base (ViT-B/16, {report['tokens']} tokens, 4 language blocks, BERT-base), batch {args.batch}, "
        f"{report['threads']} threads, {flops / 1e9:.0f} GFLOP per forward"
    )
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        peak = max(peaks_before[str(dtype)], peaks_after[str(dtype)])
        entry = report[name]
        seconds = entry["seconds"]
        entry["gemm_peak_gflops"] = {"before": peaks_before[str(dtype)] / 1e9, "after": peaks_after[str(dtype)] / 1e9}
        entry["fraction_of_peak"] = {key: flops / seconds[key]["median"] / peak for key in seconds}
        entry["ratio"] = seconds["eager"]["median"] / seconds["sdpa"]["median"]
        print(
            f"{name:8s} sdpa {seconds['sdpa']['median']:.2f} s  eager {seconds['eager']['median']:.2f} s  "
            f"eager/sdpa {entry['ratio']:.3f} (per pair: median {entry['ratio_per_pair']['median']:.3f}, "
            f"{entry['ratio_per_pair']['min']:.3f}..{entry['ratio_per_pair']['max']:.3f})  GEMM-peak fraction: "
            f"sdpa {entry['fraction_of_peak']['sdpa']:.1%}, eager {entry['fraction_of_peak']['eager']:.1%} "
            f"(peak {peak / 1e9:.0f} GFLOP/s; max|diff| pred_boxes {entry['max_abs_diff_pred_boxes']:.1e})"
        )
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
