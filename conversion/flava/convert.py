r"""Convert a FLAVA checkpoint into a vlzoo folder (safetensors, config, processor).

    python conversion/flava/convert.py --checkpoint flava_for_pretraining_unified_text_encoder.pt \
        --output-dir flava-full [--original-config original_config.json] [--verify-against io.safetensors]

Accepted checkpoints: torchmultimodal `flava_model*.pt` (FLAVAModel), `flava_for_pretraining*.pt` (with the DALL-E
codebook and the loss heads) and `FLAVAForClassification` state dicts; a transformers `facebook/flava-full`-style
folder's weights (`pytorch_model.bin` read safely, or `model.safetensors`) with its `config.json` passed as
`--original-config`; the DALL-E `encoder.pkl` (a pickled module read as data, nothing imported or run). Files are
never executed; every key is mapped exactly once; `--verify-against` compares with reference outputs and writes
`parity.json`; nothing is written unless every step succeeds. The same converter runs as `vlzoo convert flava ...`.
"""

from vlzoo import get_family
from vlzoo.conversion import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(get_family("flava").build_converter(), argv, prog="convert.py", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
