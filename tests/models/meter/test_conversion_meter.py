"""METER conversion through the user's entry point: fixture parity per case, other geometries, and refusals."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoProcessor

from vlzoo.conversion import ConversionError, convert_checkpoint, load_checkpoint
from vlzoo.models.meter import (
    MeterForImageTextRetrieval,
    MeterForPreTraining,
    MeterForQuestionAnswering,
    MeterForVisualEntailment,
    MeterForVisualReasoning,
)
from vlzoo.models.meter.conversion_meter import MeterConverter
from vlzoo.models.meter.image_processing_meter import MeterImageProcessor
from vlzoo.models.meter.processing_meter import MeterProcessor
from vlzoo.models.meter.tokenization_meter import byte_level_tokenizer

from .original_format import save_lightning_checkpoint, to_original_state_dict
from .tester import TESTER, text_inputs, tiny_config

REPO = Path(__file__).resolve().parents[3]
NLVR2_LABELS = {"id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}}
CASES = {
    "meter-pretrain-tiny": ("meter_tiny_pretrain.ckpt", MeterForPreTraining),
    "meter-vqa-tiny": ("meter_tiny_vqa.ckpt", MeterForQuestionAnswering),
    "meter-nlvr2-tiny": ("meter_tiny_nlvr2.ckpt", MeterForVisualReasoning),
    "meter-snli-tiny": ("meter_tiny_snli.ckpt", MeterForVisualEntailment),
    "meter-irtr-tiny": ("meter_tiny_flickr.ckpt", MeterForImageTextRetrieval),
}


def _convert_script():
    spec = importlib.util.spec_from_file_location("meter_convert", REPO / "conversion" / "meter" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", CASES)
def test_fixture_parity_through_convert_script(case, fixtures_dir, tmp_path, capsys):
    folder = fixtures_dir / "meter" / case
    checkpoint, head = CASES[case]
    out = tmp_path / case
    status = _convert_script().main(
        [
            "--checkpoint", str(folder / checkpoint),
            "--original-config", str(folder / "original_config.json"),
            "--output-dir", str(out),
            "--verify-against", str(folder / "io.safetensors"),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    parity = json.loads((out / "parity.json").read_text())
    expected = {k.removeprefix("output.") for k in load_file(folder / "io.safetensors") if k.startswith("output.")}
    assert parity["passed"] and set(parity["outputs"]) == expected
    worst = max(entry["max_abs_diff"] for entry in parity["outputs"].values())
    print(f"{case}: max |diff| over {len(expected)} outputs = {worst:.3e}")
    assert worst <= 1e-4
    assert AutoConfig.from_pretrained(out).architectures == [head.__name__]
    assert type(head.from_pretrained(out)) is head


def test_retrieval_keeps_itm_and_rank_output_as_stored(fixtures_dir, tmp_path):
    folder = fixtures_dir / "meter" / "meter-irtr-tiny"
    convert_checkpoint(MeterConverter(), folder / "meter_tiny_flickr.ckpt", tmp_path / "out",
                       original_config=folder / "original_config.json")  # fmt: skip
    stored = load_checkpoint(folder / "meter_tiny_flickr.ckpt").state_dict
    model = MeterForImageTextRetrieval.from_pretrained(tmp_path / "out")
    assert torch.equal(model.itm_score.fc.weight, stored["itm_score.fc.weight"])
    assert torch.equal(model.rank_output.weight, stored["rank_output.weight"])
    assert not torch.equal(model.itm_score.fc.weight[1:], model.rank_output.weight)


@pytest.mark.parametrize(
    "head, overrides",
    [
        (MeterForPreTraining, {"vision_config": {"hidden_size": 64, "num_hidden_layers": 1, "image_size": 32}}),
        (MeterForQuestionAnswering, {"vision_config": {"hidden_size": 128, "intermediate_size": 37,
                                                       "num_hidden_layers": 3, "image_size": 48,
                                                       "num_attention_heads": 2}}),
        (MeterForVisualReasoning, {"num_hidden_layers": 3, "num_attention_heads": 2, **NLVR2_LABELS}),
        (MeterForImageTextRetrieval, {"text_config": {"vocab_size": 300, "hidden_size": 768, "num_attention_heads": 12,
                                                      "num_hidden_layers": 1, "intermediate_size": 37}}),
    ],
)  # fmt: skip
def test_other_geometries_round_trip_exactly(head, overrides, tmp_path):
    """A model written in the original layout converts back to the same outputs (head counts from the stored
    sacred config; RoBERTa's from roberta-base's rule for a 768-wide tower, else the original config)."""
    torch.manual_seed(3)
    # the original hard-codes CLIP heads = width // 64, so only such towers round-trip
    vision = {"hidden_size": 64, "num_attention_heads": 1, "num_hidden_layers": 2, "image_size": 32}
    config = tiny_config(**{**overrides, "vision_config": {**vision, **overrides.get("vision_config", {})}})
    config._attn_implementation = "eager"
    model = head(config).eval()
    path = tmp_path / "model.ckpt"
    save_lightning_checkpoint(path, to_original_state_dict(model), num_heads=config.num_attention_heads)
    text = config.text_config
    roberta = {"tiny_roberta_config_used_for_from_pretrained": {"num_attention_heads": text.num_attention_heads}}
    result = convert_checkpoint(
        MeterConverter(), path, tmp_path / "out", original_config=None if text.hidden_size == 768 else roberta
    )
    assert result.config.vision_config.num_attention_heads == config.vision_config.hidden_size // 64
    converted = head.from_pretrained(tmp_path / "out", attn_implementation="eager").eval()
    converted.set_attn_implementation("eager")
    size = config.vision_config.image_size
    shape = (2, 2, 3, size, size) if head is MeterForVisualReasoning else (2, 3, size, size)
    inputs = {**text_inputs(2), "pixel_values": torch.randn(shape)}
    with torch.no_grad():
        expected, actual = TESTER.main_output(head, model(**inputs)), TESTER.main_output(head, converted(**inputs))
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


def test_position_table_resized_to_the_stored_image_size(fixtures_dir, tmp_path):
    """The original resizes the CLIP table to the run's image_size on every load; the converter does the same."""
    torch.manual_seed(0)
    config = tiny_config()
    state = to_original_state_dict(MeterForPreTraining(config))
    path = tmp_path / "model.ckpt"
    save_lightning_checkpoint(path, state, num_heads=config.num_attention_heads, image_size=64)
    roberta = {"tiny_roberta_config_used_for_from_pretrained": {"num_attention_heads": 4}}
    result = convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=roberta)
    assert result.config.vision_config.image_size == 64 and result.resized
    table = load_file(tmp_path / "out" / "model.safetensors")[
        "meter.vision_model.embeddings.position_embedding.weight"
    ]
    assert table.shape == (17, 48)
    torch.testing.assert_close(table[0], state["vit_model.visual.positional_embedding"][0])


def _write(tmp_path, state, **kwargs):
    path = tmp_path / "bad.ckpt"
    save_lightning_checkpoint(path, state, **kwargs)
    return path


def _tiny_state(head=MeterForPreTraining, **overrides):
    torch.manual_seed(0)
    return to_original_state_dict(head(tiny_config(**overrides)))


ROBERTA = {"tiny_roberta_config_used_for_from_pretrained": {"num_attention_heads": 4}}


@pytest.mark.parametrize(
    "mutate, options, message",
    [
        (lambda s: {f"model.{k}": v for k, v in s.items()}, {}, "METER"),  # another model's Lightning file
        (lambda s: {k: v for k, v in s.items() if not k.startswith("mlm_score.")}, {}, "itm_score"),
        (lambda s: s, {"variant": "clip16-288-vqa"}, "mlm_score head"),
        (lambda s: {**s, "vqa_classifier.3.weight": torch.zeros(3, 64)}, {}, "exactly one task head"),
        (lambda s: s, {"num_heads": None}, "fusion head count"),
        (lambda s: s, {"original_config": None}, "RoBERTa head count"),
    ],
)
def test_bad_checkpoints_are_refused_and_nothing_is_written(tmp_path, mutate, options, message):
    options = {"num_heads": 4, "original_config": ROBERTA, **options}
    path = _write(tmp_path, mutate(_tiny_state()), num_heads=options.pop("num_heads"))
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(MeterConverter(), path, tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_nlvr2_checkpoint_needs_three_token_types(tmp_path):
    state = _tiny_state(MeterForVisualReasoning, **NLVR2_LABELS)
    state["token_type_embeddings.weight"] = state["token_type_embeddings.weight"][:2]
    path = _write(tmp_path, state, num_heads=4)
    with pytest.raises(ConversionError, match="3 token_type_embeddings rows"):
        convert_checkpoint(MeterConverter(), path, tmp_path / "out", original_config=ROBERTA)
    assert not (tmp_path / "out").exists()


# -- the processor saved with the conversion (--tokenizer) ----------------------------------------------------------

TOKENIZER_TEXTS = ["a red circle left of a blue square", "two green triangles above a circle"] * 4


def _roberta_files(folder: Path, tokenizer) -> Path:
    """`tokenizer`'s vocab.json and merges.txt in roberta-base's file format, alone in `folder`."""
    folder.mkdir()
    (folder / "vocab.json").write_text(json.dumps(tokenizer.get_vocab()))
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    lines = [" ".join(pair) if isinstance(pair, list) else pair for pair in merges]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{line}\n" for line in lines))
    return folder


def _checkpoint_with_vocabulary(tmp_path: Path, vocab_size: int) -> Path:
    """A tiny pretraining checkpoint in the original layout whose RoBERTa embedding has `vocab_size` rows."""
    torch.manual_seed(0)
    text = {**tiny_config().text_config.to_dict(), "vocab_size": vocab_size}
    path = tmp_path / "model.ckpt"
    save_lightning_checkpoint(path, to_original_state_dict(MeterForPreTraining(tiny_config(text_config=text))),
                              num_heads=4)  # fmt: skip
    return path


def test_conversion_without_tokenizer_saves_the_image_processor(fixtures_dir, tmp_path):
    """No --tokenizer: the image processor alone, at the checkpoint's resolution (48 px here)."""
    folder = fixtures_dir / "meter" / "meter-pretrain-tiny"
    out = tmp_path / "out"
    convert_checkpoint(MeterConverter(), folder / "meter_tiny_pretrain.ckpt", out,
                       original_config=folder / "original_config.json")  # fmt: skip
    files = {path.name for path in out.iterdir()}
    assert "preprocessor_config.json" in files
    assert not {"processor_config.json", "tokenizer_config.json", "tokenizer.json"} & files
    images = AutoImageProcessor.from_pretrained(out)
    assert type(images) is MeterImageProcessor
    assert images.crop_size.height == images.crop_size.width == 48
    assert images(torch.zeros(3, 30, 70, dtype=torch.uint8), return_tensors="pt").pixel_values.shape == (1, 3, 48, 48)


def test_tokenizer_files_through_the_convert_script_give_the_processor(tmp_path, capsys):
    """conversion/meter/convert.py --tokenizer FOLDER (vocab.json + merges.txt): AutoProcessor loads a MeterProcessor
    that tokenizes as the tokenizer the files came from, truncating to the model's text positions."""
    tokenizer = byte_level_tokenizer(TOKENIZER_TEXTS, vocab_size=300)
    files = _roberta_files(tmp_path / "roberta", tokenizer)
    checkpoint = _checkpoint_with_vocabulary(tmp_path, 300)
    (tmp_path / "roberta.json").write_text(json.dumps(ROBERTA))
    out = tmp_path / "out"
    status = _convert_script().main(
        [
            "--checkpoint", str(checkpoint),
            "--original-config", str(tmp_path / "roberta.json"),
            "--output-dir", str(out),
            "--tokenizer", str(files),
        ]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    processor = AutoProcessor.from_pretrained(out)
    assert type(processor) is MeterProcessor
    text = "a red circle left of two green triangles"
    expected = tokenizer(text).input_ids
    assert processor.tokenizer(text).input_ids == expected
    assert len(expected) < len(text.encode()) + 2  # the merges were read, not only the bytes
    config = AutoConfig.from_pretrained(out)
    assert processor.tokenizer.model_max_length == config.max_text_length
    batch = processor(text=[text], images=[torch.zeros(3, 30, 70, dtype=torch.uint8)])
    assert batch["input_ids"].tolist() == [expected]
    assert batch["pixel_values"].shape == (1, 3, 32, 32)


@pytest.mark.parametrize("kind", ["missing", "sentencepiece file", "folder without files", "damaged", "too many ids"])
def test_bad_tokenizer_is_refused_and_nothing_is_written(kind, fixtures_dir, tmp_path):
    folder = fixtures_dir / "meter" / "meter-pretrain-tiny"  # a vocabulary of 200 ids
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "vocab.json").write_text("not json")
    (damaged / "merges.txt").write_text("#version: 0.2\n")
    (tmp_path / "empty").mkdir()
    tokenizer, message = {
        "missing": (tmp_path / "roberta-base", "does not exist"),
        "sentencepiece file": (fixtures_dir / "beit3" / "tokenizer" / "tiny.spm", "is a file"),
        "folder without files": (tmp_path / "empty", "holds neither vocab.json and merges.txt"),
        "damaged": (damaged, "cannot be loaded"),
        "too many ids": (_roberta_files(tmp_path / "roberta", byte_level_tokenizer()), "does not fit the checkpoint"),
    }[kind]
    with pytest.raises((ValueError, OSError), match=r"--tokenizer ") as error:
        convert_checkpoint(MeterConverter(), folder / "meter_tiny_pretrain.ckpt", tmp_path / "out",
                           original_config=folder / "original_config.json", tokenizer=tokenizer)  # fmt: skip
    assert message in str(error.value)
    if kind != "too many ids":
        assert "vocab.json and merges.txt" in str(error.value)  # what is expected
    assert not (tmp_path / "out").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out")]  # no temporary folder
