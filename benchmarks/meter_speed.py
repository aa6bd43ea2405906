"""vlzoo's METER forward against the original's fusion on the same transformers towers and the same weights.

The model is METER at base size (CLIP ViT-B/16 with 11 blocks at 288 px, RoBERTa-base, 6 co-attention layer pairs
768 wide; random weights), batch 8, 40-token texts. The reference is built here from the same transformers towers
(`CLIPVisionModel`, `RobertaModel`, eager attention) and a fusion written the way the original `BertCrossLayer` runs
(meter.md §2.4: separate query/key/value projections, `softmax(QK^T / sqrt(d) + additive -10000 mask)`, context
permuted back, dense, post-LN; self-attention, cross-attention, FFN; both streams from the previous layer's outputs),
loaded with vlzoo's weights; the outputs are checked to agree before any timing. Repetitions are interleaved
(reference, vlzoo, vlzoo, reference, ...) in one process, in fp32 and under bf16 autocast, so other load on the
machine hits both alike. Printed: median seconds per forward, the speed ratio reference / vlzoo (> 1: vlzoo faster;
median and spread of the per-repetition ratios), and the fraction of this machine's GEMM peak each forward reaches
(its FLOPs, counted with `torch.utils.flop_counter`, per second over the best rate of a large matmul measured in the
same dtype at the start and at the end of the run).

    nice python benchmarks/meter_speed.py [--batch 8] [--repeats 3] [--image-size 288] [--json out.json]
"""

import argparse
import copy
import json
import math
import time
from collections.abc import Callable

import torch
from speed_common import autocast, count_flops, gemm_peak, spread
from torch import nn
from transformers import CLIPVisionModel, RobertaModel

from vlzoo.models.meter import MeterConfig, MeterModel

TEXT_LENGTH = 40


# ----------------------------------------------------------------------------------------------------------------
# The reference: the original's co-attention layers, written out
# ----------------------------------------------------------------------------------------------------------------


class OriginalAttention(nn.Module):
    """BERT attention as METER's `BertAttention` runs it: q/k/v projections, scores, additive mask, softmax, context,
    `output.dense`, `LayerNorm(dense + input)`."""

    def __init__(self, hidden: int, heads: int, eps: float):
        super().__init__()
        self.heads, self.head_size = heads, hidden // heads
        self.query, self.key, self.value = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )
        self.dense = nn.Linear(hidden, hidden)
        self.layer_norm = nn.LayerNorm(hidden, eps=eps)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.heads, self.head_size).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor, other: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        query = self._heads(self.query(hidden))
        key, value = self._heads(self.key(other)), self._heads(self.value(other))
        scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(self.head_size)
        probs = nn.functional.softmax(scores + additive_mask, dim=-1)
        context = torch.matmul(probs, value).permute(0, 2, 1, 3).contiguous()
        context = context.view(*context.shape[:-2], self.heads * self.head_size)
        return self.layer_norm(self.dense(context) + hidden)


class OriginalCrossLayer(nn.Module):
    """`BertCrossLayer`: self-attention, cross-attention to the other stream, exact-GELU FFN, each post-LN."""

    def __init__(self, hidden: int, heads: int, intermediate: int, eps: float):
        super().__init__()
        self.attention = OriginalAttention(hidden, heads, eps)
        self.crossattention = OriginalAttention(hidden, heads, eps)
        self.intermediate = nn.Linear(hidden, intermediate)
        self.output = nn.Linear(intermediate, hidden)
        self.output_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, hidden, other, own_mask, other_mask):
        attended = self.attention(hidden, hidden, own_mask)
        crossed = self.crossattention(attended, other, other_mask)
        return self.output_norm(self.output(nn.functional.gelu(self.intermediate(crossed))) + crossed)


class ReferenceMeter(nn.Module):
    """The transformers towers (eager attention) and the original fusion, with the weights of a vlzoo `MeterModel`."""

    def __init__(self, model: MeterModel):
        super().__init__()
        config = model.config
        # copies: building a tower sets `_attn_implementation` on its config, which vlzoo's towers read at run time
        vision_config, text_config = copy.deepcopy(config.vision_config), copy.deepcopy(config.text_config)
        self.vision = CLIPVisionModel._from_config(vision_config, attn_implementation="eager")
        self.text = RobertaModel._from_config(text_config, add_pooling_layer=False, attn_implementation="eager")
        self.vision.load_state_dict(model.vision_model.state_dict())
        self.text.load_state_dict(model.text_model.state_dict())
        self.text_transform, self.image_transform = model.text_projection, model.image_projection
        self.token_type_embeddings = model.token_type_embeddings
        size = (config.hidden_size, config.num_attention_heads, config.intermediate_size, config.layer_norm_eps)
        self.text_layers = nn.ModuleList(OriginalCrossLayer(*size) for _ in range(config.num_hidden_layers))
        self.image_layers = nn.ModuleList(OriginalCrossLayer(*size) for _ in range(config.num_hidden_layers))
        for ours, theirs in ((self.text_layers, model.text_layers), (self.image_layers, model.image_layers)):
            for layer, source in zip(ours, theirs, strict=True):
                _copy_layer(layer, source)
        self.text_pooler, self.image_pooler = model.text_pooler, model.image_pooler

    def forward(self, input_ids, attention_mask, pixel_values):
        text = self.text(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        image = self.vision.post_layernorm(self.vision(pixel_values=pixel_values).last_hidden_state)
        x = self.text_transform(text) + self.token_type_embeddings(torch.zeros_like(input_ids))
        image_types = torch.ones(image.shape[:2], dtype=torch.long, device=image.device)
        y = self.image_transform(image) + self.token_type_embeddings(image_types)
        text_mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        image_mask = (1.0 - torch.ones(image.shape[:2], dtype=x.dtype)[:, None, None, :]) * -10000.0
        for text_layer, image_layer in zip(self.text_layers, self.image_layers, strict=True):
            x, y = text_layer(x, y, text_mask, image_mask), image_layer(y, x, image_mask, text_mask)
        return torch.cat([self.text_pooler(x), self.image_pooler(y)], dim=-1)


def _copy_layer(layer: OriginalCrossLayer, source: nn.Module) -> None:
    pairs = [
        (layer.attention, source.self_attn, source.layer_norm1),
        (layer.crossattention, source.cross_attn, source.cross_attn_layer_norm),
    ]
    with torch.no_grad():
        for attention, theirs, norm in pairs:
            for mine, name in ((attention.query, "q_proj"), (attention.key, "k_proj"), (attention.value, "v_proj"),
                               (attention.dense, "out_proj")):  # fmt: skip
                mine.load_state_dict(getattr(theirs, name).state_dict())
            attention.layer_norm.load_state_dict(norm.state_dict())
        layer.intermediate.load_state_dict(source.mlp.fc1.state_dict())
        layer.output.load_state_dict(source.mlp.fc2.state_dict())
        layer.output_norm.load_state_dict(source.layer_norm2.state_dict())


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------


def build_models(image_size: int, seed: int = 0) -> tuple[ReferenceMeter, MeterModel]:
    torch.manual_seed(seed)
    model = MeterModel(MeterConfig(vision_config={"image_size": image_size})).eval()
    with torch.no_grad():  # non-trivial LayerNorms, as in a trained model
        for name, parameter in model.named_parameters():
            if "norm" in name.lower():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return ReferenceMeter(model).eval(), model


def make_inputs(batch: int, image_size: int, seed: int = 1) -> dict[str, torch.Tensor]:
    """Texts of different lengths padded to 40 (`<s> ... </s> <pad>...`), random images."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(4, 50000, (batch, TEXT_LENGTH), generator=generator)
    lengths = torch.randint(8, TEXT_LENGTH + 1, (batch,), generator=generator)
    lengths[0] = TEXT_LENGTH
    mask = (torch.arange(TEXT_LENGTH)[None] < lengths[:, None]).long()
    ids[:, 0] = 0
    ids[torch.arange(batch), lengths - 1] = 2
    ids = torch.where(mask.bool(), ids, torch.ones_like(ids))
    pixels = torch.randn(batch, 3, image_size, image_size, generator=generator)
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels}


def forward_fn(model: nn.Module, inputs: dict[str, torch.Tensor], dtype: torch.dtype) -> Callable[[], torch.Tensor]:
    """One full forward as a user runs it (inference mode, autocast entered per call); returns `cls_feats`."""

    def run() -> torch.Tensor:
        with torch.inference_mode(), autocast(dtype):
            out = model(**inputs)
            return out if isinstance(out, torch.Tensor) else out.pooler_output

    return run


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=288)
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per model and dtype")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    dtypes = [getattr(torch, name) for name in args.dtypes.split(",")]

    reference, model = build_models(args.image_size)
    inputs = make_inputs(args.batch, args.image_size)
    report: dict = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "image_size": args.image_size,
        "text_length": TEXT_LENGTH,
        "repeats": args.repeats,
        "attention": {
            "vlzoo": [
                model.vision_model.config._attn_implementation,
                model.text_model.config._attn_implementation,
                model.config._attn_implementation,
            ],
            "reference": [
                reference.vision.config._attn_implementation,
                reference.text.config._attn_implementation,
                "eager (written out)",
            ],
        },  # fmt: skip
    }
    peaks_before = {str(d): gemm_peak(d) for d in dtypes}
    flops = None
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        runs = {"reference": forward_fn(reference, inputs, dtype), "vlzoo": forward_fn(model, inputs, dtype)}
        diff = float((runs["vlzoo"]().float() - runs["reference"]().float()).abs().max())
        if flops is None:
            flops = count_flops(runs["vlzoo"])
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        times: dict[str, list[float]] = {key: [] for key in runs}
        for repeat in range(args.repeats):
            for key in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
                start = time.perf_counter()
                runs[key]()
                times[key].append(time.perf_counter() - start)
        ratios = [r / v for r, v in zip(times["reference"], times["vlzoo"], strict=True)]
        report[name] = {
            "max_abs_diff_cls_feats": diff,
            "seconds": {key: spread(values) for key, values in times.items()},
            "ratio_per_pair": spread(ratios),
        }
    peaks_after = {str(d): gemm_peak(d) for d in dtypes}
    report["flops"] = flops
    for dtype in dtypes:
        name = str(dtype).replace("torch.", "")
        peak = max(peaks_before[str(dtype)], peaks_after[str(dtype)])
        entry = report[name]
        seconds = entry["seconds"]
        entry["gemm_peak_gflops"] = {"before": peaks_before[str(dtype)] / 1e9, "after": peaks_after[str(dtype)] / 1e9}
        entry["fraction_of_peak"] = {key: flops / seconds[key]["median"] / peak for key in seconds}
        entry["ratio"] = seconds["reference"]["median"] / seconds["vlzoo"]["median"]
        print(
            f"{name:8s} reference {seconds['reference']['median']:.2f} s  vlzoo {seconds['vlzoo']['median']:.2f} s  "
            f"reference/vlzoo {entry['ratio']:.3f} (per pair: median {entry['ratio_per_pair']['median']:.3f}, "
            f"{entry['ratio_per_pair']['min']:.3f}..{entry['ratio_per_pair']['max']:.3f})  GEMM-peak fraction: "
            f"reference {entry['fraction_of_peak']['reference']:.1%}, vlzoo {entry['fraction_of_peak']['vlzoo']:.1%} "
            f"({flops / 1e9:.0f} GFLOP per forward, peak {peak / 1e9:.0f} GFLOP/s; max|diff| cls_feats "
            f"{entry['max_abs_diff_cls_feats']:.1e})"
        )
    if args.json:
        with open(args.json, "w") as handle:
            handle.write(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
