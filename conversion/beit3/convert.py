r"""Convert a released BEiT-3 checkpoint into a transformers folder (safetensors, config, parity report).

    python conversion/beit3/convert.py --checkpoint beit3_base_patch16_480_vqa.pth --variant base \
        --output-dir beit3-base-vqa [--tokenizer beit3.spm] [--original-config original_config.json] \
        [--verify-against io.safetensors]

Every released file converts: pretrained / itc / indomain backbones, ImageNet, VQA, NLVR2, captioning (COCO and
NoCaps) and retrieval heads, in `{'model'}`, DeepSpeed `{'module'}` (`mp_rank_00_model_states.pt`) or flat
containers. The head is recognised from the keys. Fine-tuned files pickle an `argparse.Namespace` under `args`: it is
read as plain data, never executed. The head count is not stored in the weights: `--variant base|large` (or
`--original-config` with `encoder_attention_heads`) gives it, else head dimension 64 is assumed. When the target
resolution (`img_size` of the original config, else the file's `args.input_size`) differs from the stored vision
position table, the table is resized by the original rule (bicubic, class token and unused rows kept). The image
processor is saved at the checkpoint's resolution (the ImageNet transform for the in1k head); with `--tokenizer
beit3.spm` (the released sentencepiece file) the whole processor, so that AutoProcessor loads the folder. Nothing is
written unless every step succeeds. The same converter runs as `vlzoo convert beit3 ...`.
"""

from vlzoo import get_family
from vlzoo.conversion import run_cli


def main(argv: list[str] | None = None) -> int:
    return run_cli(get_family("beit3").build_converter(), argv, prog="convert.py", description=__doc__)


if __name__ == "__main__":
    raise SystemExit(main())
