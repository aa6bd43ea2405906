"""Convert a released MS-CLIP checkpoint into a transformers folder (safetensors, config, processor).

    python conversion/ms_clip/convert.py --checkpoint b32-yfcc-msclips_ckpt.pth --variant b32-yfcc \
        --output-dir ms_clip-b32-yfcc [--original-config original_config.json] [--verify-against io.safetensors]

The `.pth` file is read with `torch.load(weights_only=True)` (never executed); every key is mapped exactly once
(leftovers are listed and abort the conversion); `--verify-against` compares the converted model with reference
outputs and writes `parity.json`. Nothing is written unless every step succeeds. The same converter runs as
`vlzoo convert ms_clip ...`.
"""

import argparse

from vlzoo.conversion import add_common_cli_arguments, run_from_args
from vlzoo.models.ms_clip.conversion_ms_clip import VARIANTS, MsClipConverter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_cli_arguments(parser, variants=VARIANTS)
    return run_from_args(MsClipConverter(), parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
