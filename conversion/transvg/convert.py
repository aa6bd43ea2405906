r"""Convert a TransVG (or TransVG++) training checkpoint into a transformers folder (safetensors, config, processor).

    python conversion/transvg/convert.py --checkpoint best_checkpoint.pth --output-dir transvg-r50-referit \
        [--original-config original_config.json] [--verify-against io.safetensors]
    python conversion/transvg/convert.py --family transvg_pp --checkpoint best_checkpoint.pth --output-dir out

The checkpoint is the container the original train.py writes (`{'model', 'args', 'optimizer', 'lr_scheduler',
'epoch', 'val_accu'}`, legacy or zip torch format): it is read as data (the argparse Namespace and the scheduler
state are never imported or run), the architecture comes from `args` and the tensor shapes, packed q|k|v
projections are split and obsolete keys (`position_ids`, BERT's unused pooler) dropped. `--original-config` may add
what neither holds (e.g. `bert_config.num_attention_heads` for a non-base BERT). `--verify-against` compares the
converted model with reference outputs and writes `parity.json`. Nothing is written unless every step succeeds.
The same converters run as `vlzoo convert transvg ...` and `vlzoo convert transvg_pp ...`.
"""

import argparse

from vlzoo import get_family
from vlzoo.conversion import run_cli

FAMILIES = ("transvg", "transvg_pp")


def main(argv: list[str] | None = None) -> int:
    selector = argparse.ArgumentParser(add_help=False)
    selector.add_argument("--family", choices=FAMILIES, default="transvg")
    known, rest = selector.parse_known_args(argv)
    converter = get_family(known.family).build_converter()
    return run_cli(converter, rest, prog=f"convert.py --family {known.family}", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
