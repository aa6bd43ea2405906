"""vlzoo's FLAVA against `transformers.FlavaModel` on the same weights: forward time, ratio and GEMM-peak fraction.

A base-size `transformers.FlavaModel` (facebook/flava-full's architecture, random weights) is saved, converted with
vlzoo's FLAVA converter (the `vlzoo convert flava` path) and loaded as `vlzoo.FlavaModel`; both then run the full
image + text + multimodal forward on the same batch (224 px images, 32-token texts, batch 8 by default), in fp32 and
under bf16 autocast. Repetitions are interleaved (transformers, vlzoo, transformers, ...) in one process, so that
other load on the machine hits both alike; the script prints the median seconds per forward, their ratio (per
repetition pair, median and spread), and the fraction of this machine's GEMM peak each reaches: the forward's
FLOPs (counted with `torch.utils.flop_counter`) per second over the best rate of a large matmul measured here, in
the same dtype, at the start and at the end of the run.

    nice python benchmarks/flava_vs_transformers.py [--batch 8] [--repeats 7] [--padded] [--threads N] [--json out.json]

`--padded` gives the texts different lengths (padded to 32, the processor's attention_mask passed to both models);
by default every text is 32 real tokens (the attention_mask is still passed, all ones). Outputs are checked to agree
(max |diff| of the three encoders' last_hidden_state) before any timing.
"""

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import vlzoo  # noqa: F401
from vlzoo.conversion import convert_checkpoint
from vlzoo.models.flava import FlavaModel
from vlzoo.models.flava.conversion_flava import FlavaConverter

TEXT_LENGTH = 32


def build_models(workdir: Path, seed: int = 0) -> tuple[torch.nn.Module, FlavaModel]:
    """A random base-size transformers FlavaModel and the vlzoo model converted from its saved folder."""
    from transformers import FlavaConfig as HfFlavaConfig
    from transformers import FlavaModel as HfFlavaModel

    torch.manual_seed(seed)
    reference = HfFlavaModel(HfFlavaConfig(init_codebook=False)).eval()
    with torch.no_grad():  # non-trivial LayerNorms, as in a trained model
        for name, parameter in reference.named_parameters():
            if "layernorm" in name.lower():
                parameter.add_(0.05 * torch.randn_like(parameter))
    reference.save_pretrained(workdir / "hf")
    convert_checkpoint(
        FlavaConverter(),
        workdir / "hf" / "model.safetensors",
        workdir / "vlzoo",
        original_config=workdir / "hf" / "config.json",
    )
    model = FlavaModel.from_pretrained(workdir / "vlzoo").eval()
    return reference, model


def make_inputs(batch: int, padded: bool, seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 30000, (batch, TEXT_LENGTH), generator=generator)
    lengths = torch.full((batch,), TEXT_LENGTH)
    if padded:
        lengths = torch.randint(6, TEXT_LENGTH + 1, (batch,), generator=generator)
        lengths[0] = TEXT_LENGTH
    mask = (torch.arange(TEXT_LENGTH)[None] < lengths[:, None]).long()
    ids[:, 0] = 101
    ids[torch.arange(batch), lengths - 1] = 102
    ids = ids * mask
    pixels = torch.randn(batch, 3, 224, 224, generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def autocast(dtype: torch.dtype) -> contextlib.AbstractContextManager:
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=dtype)


def forward_fn(model: torch.nn.Module, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> Callable[[], object]:
    """One full forward as a user runs it: inference mode, autocast entered per call."""

    def run() -> object:
        with torch.inference_mode(), autocast(dtype):
            return model(**inputs)

    return run


def count_flops(fn: Callable[[], object]) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def gemm_peak(dtype: torch.dtype, size: int = 3072, tries: int = 5) -> dict[str, float]:
    """The best FLOP rate of a `size`^3 matmul in `dtype`, through `torch.mm` (for fp32 MKL's sgemm on this build)
    and through oneDNN's linear op (vlzoo's fp32 CPU path); the machine's practical GEMM peak is the larger."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    kernels = {"torch.mm": lambda: a @ b}
    if hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        kernels["onednn"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    best = dict.fromkeys(kernels, 0.0)
    with torch.inference_mode():
        for name, kernel in kernels.items():
            kernel()
            for _ in range(tries):
                start = time.perf_counter()
                kernel()
                best[name] = max(best[name], 2 * size**3 / (time.perf_counter() - start))
    return best


def max_diff(ours: object, theirs: object) -> dict[str, float]:
    pairs = {
        "image": (ours.image_output.last_hidden_state, theirs.image_output.last_hidden_state),
        "text": (ours.text_output.last_hidden_state, theirs.text_output.last_hidden_state),
        "multimodal": (ours.multimodal_output.last_hidden_state, theirs.multimodal_output.last_hidden_state),
    }
    return {k: float((a.float() - b.float()).abs().max()) for k, (a, b) in pairs.items()}


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7, help="timed forwards per model and dtype")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--padded", action="store_true", help="texts of different lengths, padded to 32")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's); 1 is steadier on a busy machine"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as workdir:
        reference, model = build_models(Path(workdir))
    inputs = make_inputs(args.batch, args.padded)
    report: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "text_length": TEXT_LENGTH,
        "padded": args.padded,
        "repeats": args.repeats,
    }
    peaks_before = {str(d): gemm_peak(d) for d in dtypes}
    reference_fp32 = forward_fn(reference, inputs, torch.float32)()
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        runs = {"transformers": forward_fn(reference, inputs, dtype), "vlzoo": forward_fn(model, inputs, dtype)}
        outputs = {k: fn() for k, fn in runs.items()}
        diffs = max_diff(outputs["vlzoo"], outputs["transformers"])
        # each model's error against transformers in fp32 (bf16: what the lower precision costs each)
        errors = {k: max(max_diff(out, reference_fp32).values()) for k, out in outputs.items()}
        flops = {k: count_flops(fn) for k, fn in runs.items()}
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        times: dict[str, list[float]] = {k: [] for k in runs}
        cpu: dict[str, list[float]] = {k: [] for k in runs}
        for repeat in range(args.repeats):
            order = list(runs) if repeat % 2 == 0 else list(runs)[::-1]
            for key in order:
                start, start_cpu = time.perf_counter(), time.process_time()
                runs[key]()
                times[key].append(time.perf_counter() - start)
                cpu[key].append(time.process_time() - start_cpu)
        ratios = [t / v for t, v in zip(times["transformers"], times["vlzoo"], strict=True)]
        cpu_ratios = [t / v for t, v in zip(cpu["transformers"], cpu["vlzoo"], strict=True)]
        report[name] = {
            "max_abs_diff": diffs,
            "max_abs_error_vs_fp32_transformers": errors,
            "flops": flops["transformers"],
            "flops_vlzoo": flops["vlzoo"],
            "seconds": {k: spread(v) for k, v in times.items()},
            "speedup_per_pair": spread(ratios),
            # process CPU seconds: with --threads 1 a measure of the work that other load on the machine barely moves
            "cpu_seconds": {k: spread(v) for k, v in cpu.items()},
            "cpu_speedup_per_pair": spread(cpu_ratios),
        }
    peaks_after = {str(d): gemm_peak(d) for d in dtypes}
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        entry = report[name]
        rates = {k: max(peaks_before[str(dtype)][k], peaks_after[str(dtype)][k]) for k in peaks_before[str(dtype)]}
        peak = max(rates.values())
        entry["gemm_peak_gflops"] = {k: v / 1e9 for k, v in rates.items()}
        entry["gemm_peak_gflops_before_after"] = [
            max(peaks_before[str(dtype)].values()) / 1e9,
            max(peaks_after[str(dtype)].values()) / 1e9,
        ]
        seconds = entry["seconds"]
        entry["fraction_of_peak"] = {k: entry["flops"] / seconds[k]["median"] / peak for k in seconds}
        entry["fraction_of_peak_best_run"] = {k: entry["flops"] / seconds[k]["min"] / peak for k in seconds}
        speedup = seconds["transformers"]["median"] / seconds["vlzoo"]["median"]
        entry["speedup"] = speedup
        pairs = entry["speedup_per_pair"]
        print(
            f"{name:8s} transformers {seconds['transformers']['median']:.3f} s  vlzoo {seconds['vlzoo']['median']:.3f} s"
            f"  speedup {speedup:.2f}x (per pair: median {pairs['median']:.2f}, range {pairs['min']:.2f}..{pairs['max']:.2f})"
            f"  | of the GEMM peak {peak / 1e9:.0f} GFLOP/s ({entry['flops'] / 1e9:.0f} GFLOP per forward): transformers"
            f" {entry['fraction_of_peak']['transformers']:.0%}, vlzoo {entry['fraction_of_peak']['vlzoo']:.0%}"
            f"  | CPU-time speedup {entry['cpu_speedup_per_pair']['median']:.2f}x"
            f"  | max|diff| vlzoo-transformers {max(entry['max_abs_diff'].values()):.1e}, vs fp32 transformers:"
            f" transformers {entry['max_abs_error_vs_fp32_transformers']['transformers']:.1e},"
            f" vlzoo {entry['max_abs_error_vs_fp32_transformers']['vlzoo']:.1e}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
