r"""Convert a released METER checkpoint (PyTorch-Lightning `.ckpt`) into a transformers folder.

    python conversion/meter/convert.py --checkpoint meter_clip16_288_roberta_vqa.ckpt --output-dir meter-vqa \
        [--variant clip16-288-vqa] [--tokenizer roberta-base/] [--original-config original_config.json] \
        [--verify-against io.safetensors]

The Lightning file is read with the restricted unpickler (tensors and plain containers kept, the Lightning callback
class replaced by an inert stand-in; nothing is imported or run). The head class comes from the head keys
(`mlm_score` pretraining, `vqa_classifier`, `nlvr2_classifier`, `snli_classifier`, `rank_output` retrieval), the
image size from the position table (or the stored sacred `image_size`), the fusion head count from the stored
`hyper_parameters.config.num_heads`; RoBERTa's head count is roberta-base's 12 unless `--original-config` gives
`tiny_roberta_config_used_for_from_pretrained`. `itm_score` and `rank_output` are kept as stored. The image
processor is saved at the checkpoint's resolution; with `--tokenizer` (a folder holding roberta-base's `vocab.json`
and `merges.txt`) the whole processor, so that AutoProcessor loads the folder. Nothing is written unless every step
succeeds. The same converter runs as `vlzoo convert meter ...`.
"""

from vlzoo import get_family
from vlzoo.conversion import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(get_family("meter").build_converter(), argv, prog="convert.py", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
