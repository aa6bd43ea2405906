r"""Convert a released MS-CLIP checkpoint into a transformers folder (safetensors, config, processor).

    python conversion/ms_clip/convert.py --checkpoint b32-yfcc-msclips_ckpt.pth --variant b32-yfcc \
        --output-dir ms_clip-b32-yfcc [--original-config original_config.json] [--verify-against io.safetensors]

The `.pth` file is read with `torch.load(weights_only=True)` (never executed); every key is mapped exactly once
(leftovers are listed and abort the conversion); `--verify-against` compares the converted model with reference
outputs and writes `parity.json`. Nothing is written unless every step succeeds. The same converter runs as
`vlzoo convert ms_clip ...`.
"""

from vlzoo import get_family
from vlzoo.conversion import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(get_family("ms_clip").build_converter(), argv, prog="convert.py", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
