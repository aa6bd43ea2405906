"""The released-checkpoint cards: every file validates, bad cards are refused, cards render to valid Hub metadata,
parity is recorded from a conversion's parity.json, and the README's table is the data's."""

import copy
import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import PreTrainedModel

from vlzoo.conversion.output_dir import read_marker, write_marker
from vlzoo.conversion.parity import OutputComparison, ParityReport
from vlzoo.hub import cards
from vlzoo.hub.cards import (
    LICENSES,
    NOT_STATED,
    STATUS_AVAILABLE,
    STATUS_NOT_AVAILABLE,
    CardError,
    card_status,
    card_to_dict,
    card_with_parity,
    cards_dir,
    dump_card,
    hub_repo_name,
    load_card,
    load_cards,
    readme_with_model_table,
    render_model_card,
    render_model_table,
    update_card_parity,
    validate_card,
    write_model_card,
)
from vlzoo.registry import families

REPO = Path(__file__).resolve().parents[2]
CARD_FILES = sorted((REPO / "model_cards").glob("*/*.yaml"))
SPECS = REPO.parent / "shared" / "specs"
# Where each family's released checkpoints are described (the source the cards are copied from).
SPEC_FILES = {"ms_clip": "msclip.md", "beit3": "beit3.md", "meter": "meter.md", "flava": "flava.md",
              "transvg": "transvg.md"}  # fmt: skip
SAMPLE = REPO / "model_cards" / "ms_clip" / "b32-yfcc.yaml"


@pytest.fixture(scope="module")
def all_cards() -> list[cards.CheckpointCard]:
    return load_cards()


def _families_with_converter() -> set[str]:
    return {family.key for family in families() if family.converter is not None}


# ----------------------------------------------------------------------------------------------------------------
# The data
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda path: f"{path.parent.name}/{path.stem}")
def test_every_card_file_is_valid(path):
    card = load_card(path)
    assert (card.family, card.variant) == (path.parent.name, path.stem)
    assert card.hub_repo == hub_repo_name(card.family, card.variant)
    assert validate_card(yaml.safe_load(dump_card(card)), path) == card  # the canonical form reads back equal


def test_the_package_reads_the_repository_cards(all_cards):
    assert CARD_FILES, "no card files under model_cards/"
    assert cards_dir().resolve() == (REPO / "model_cards").resolve()
    assert sorted(f"{c.family}/{c.variant}" for c in all_cards) == sorted(
        f"{path.parent.name}/{path.stem}" for path in CARD_FILES
    )
    assert len({card.hub_repo for card in all_cards}) == len(all_cards)


def test_each_card_names_a_class_and_preset_of_its_family(all_cards):
    import importlib

    registered = {family.key: family for family in families()}
    for card in all_cards:
        package = importlib.import_module(f"vlzoo.models.{card.family}")
        assert hasattr(package, card.head_class), (
            f"{card.hub_repo}: vlzoo.models.{card.family} has no {card.head_class}"
        )
        family = registered.get(card.family)
        if family is None:
            continue
        assert issubclass(getattr(package, card.head_class), PreTrainedModel), card.hub_repo
        if card.preset is not None and family.config_builder is not None:
            family.config_builder(card.preset)  # raises, naming the valid presets, for an unknown one


def _spec_section(family: str) -> str:
    path = SPECS / SPEC_FILES[family]
    if not path.is_file():
        pytest.skip(reason=f"the family specs are not next to the repository ({path} not found)")
    text = path.read_text(encoding="utf-8")
    match = re.search(r"^## \d+\. Released checkpoints.*?(?=^## )", text, flags=re.S | re.M)
    assert match, f"{path} has no 'Released checkpoints' section"
    return match.group(0)


def _expand(pattern: str) -> list[str]:
    """`a_{x,y}_b.pth` -> [`a_x_b.pth`, `a_y_b.pth`]."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    options = [part.split(",") if i % 2 else [part] for i, part in enumerate(parts)]
    return ["".join(choice) for choice in itertools.product(*options)]


def _spec_files(section: str) -> set[str]:
    """The checkpoint files the section's table rows list (superseded rows excluded)."""
    names = set()
    for row in section.splitlines():
        if row.startswith("|") and "superseded" not in row:
            for token in re.findall(r"[\w{},.-]+\.(?:pth|ckpt|pt|pkl)\b", row):
                names.update(_expand(token))
    return names


@pytest.mark.parametrize("family", sorted(SPEC_FILES))
def test_cards_cover_the_spec_and_copy_it(family, all_cards):
    """Every checkpoint file of the spec's table has a card; each card's file, URL, paper and claims are the spec's."""
    section = _spec_section(family)
    whole = " ".join((SPECS / SPEC_FILES[family]).read_text(encoding="utf-8").split())
    family_cards = [card for card in all_cards if card.family == family]
    assert family_cards
    files = [card.source.file for card in family_cards if card.source.file is not None]
    assert len(files) == len(set(files)), "two cards for one file"
    listed = _spec_files(section)
    if listed:  # TransVG's release is a folder whose file names the spec does not know
        assert sorted(listed) == sorted(files)
    for card in family_cards:
        url = card.source.url
        assert url in section or url.rsplit("/", 1)[0] + "/<file>" in section, f"{card.hub_repo}: {url}"
        assert card.paper.url.rsplit("/", 1)[1] in whole and card.paper.title in whole, card.hub_repo
        if card.license != NOT_STATED:
            assert re.search(re.escape(card.license), whole, flags=re.I), f"{card.hub_repo}: {card.license}"
        for result in card.results:
            assert re.search(rf"(?<![\d.]){re.escape(result.value)}(?![\d])", section), (
                f"{card.hub_repo}: claimed value {result.value} is not in the spec's released-checkpoints section"
            )


def test_from_memory_claims_say_so(all_cards):
    """The numbers the specs quote from memory keep that mark in their source, and only those."""
    meter = " ".join(_spec_section("meter").split())
    for card in (card for card in all_cards if card.family == "meter"):
        for result in card.results:
            # meter.md writes each claim as `<numbers> (<source>)`: the parenthesis after the value is its source
            after = meter[meter.index(result.value) :]
            source = after[after.index("(") : after.index(")") + 1]
            assert ("from memory" in source) == ("from memory" in result.source), (card.hub_repo, result.value)
    transvg = _spec_section("transvg")
    table = "\n".join(row for row in transvg.splitlines() if row.startswith("|"))
    quoted = " ".join(transvg[transvg.index("(quoted from memory") :].split("TransVG++")[0].split())
    for card in (card for card in all_cards if card.family == "transvg"):
        for result in card.results:
            # transvg.md: the README table's numbers, then a paragraph of paper numbers quoted from memory
            where = quoted if "from memory" in result.source else table
            assert re.search(rf"(?<![\d.]){re.escape(result.value)}(?![\d])", where), (card.hub_repo, result.value)


# ----------------------------------------------------------------------------------------------------------------
# Refused cards
# ----------------------------------------------------------------------------------------------------------------


def _sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))


def _set(data: dict, dotted: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = re.split(r"\.", dotted)
    target = data
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return data


_DELETE = object()

BAD_CARDS = {
    "unknown key": ("colour", "blue", "unknown key 'colour'"),
    "unknown nested key": ("source.mirror", "https://example.org", "source: unknown key 'mirror'"),
    "missing field": ("license", _DELETE, "license: missing"),
    "missing nested field": ("paper.venue", _DELETE, "paper.venue: missing"),
    "wrong type": ("resolution", "224", "resolution: expected an integer, got str"),
    "bool for an integer": ("resolution", True, "resolution: expected an integer, got bool"),
    "unquoted claim": ("results.0.value", 36.7, "results[0].value: expected a string, got float 36.7 (quote"),
    "claim that is no number": ("results.0.value", "about 37", "results[0].value: must be a decimal number"),
    "list expected": ("tags", "vlzoo", "tags: expected a list of items of type str, got str"),
    "repo name off the rule": ("hub_repo", "vlzoo/ms-clip-s-b32-yfcc", "hub_repo: expected 'vlzoo/ms_clip-b32-yfcc'"),
    "foreign organisation": ("hub_repo", "someone/ms_clip-b32-yfcc", "hub_repo: expected 'vlzoo/ms_clip-b32-yfcc'"),
    "unknown family": ("family", "no_such_family", "family: unknown family 'no_such_family'"),
    "family of another folder": ("family", "beit3", "family: is 'beit3' but the card lies in model_cards/ms_clip/"),
    "variant of another file": ("variant", "b16-yfcc", "variant: is 'b16-yfcc' but the file is named b32-yfcc.yaml"),
    "unknown licence": ("license", "MIT License", "license: must be one of"),
    "unknown pipeline tag": ("pipeline_tag", "zero-shot-classifcation", "pipeline_tag: must be one of"),
    "paper not on arXiv": ("paper.url", "https://example.org/paper.pdf", "paper.url: must be an arXiv abstract page"),
    "insecure source": ("source.url", "http://1drv.ms/x", "source.url: must be an https:// address"),
    "short commit": ("source.commit", "e25daf3", "source.commit: must be 40 lowercase hex digits"),
    "tags without vlzoo": ("tags", ["clip"], "tags: must include 'vlzoo'"),
    "bad parity": ("parity", {"passed": "yes"}, "parity.passed: expected true/false"),
    "null for a required value": ("name", None, "name: expected a string, got NoneType"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_bad_cards_are_refused_naming_file_and_field(case, tmp_path):
    field, value, message = BAD_CARDS[case]
    path = tmp_path / "ms_clip" / "b32-yfcc.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(_set(_sample(), field, value), sort_keys=False), encoding="utf-8")
    with pytest.raises(CardError) as caught:
        load_card(path)
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert message in str(caught.value), caught.value


def test_the_unchanged_sample_is_accepted(tmp_path):
    path = tmp_path / "ms_clip" / "b32-yfcc.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(_sample(), sort_keys=False), encoding="utf-8")
    assert load_card(path) == load_card(SAMPLE)


def test_invalid_yaml_and_non_mappings_are_refused(tmp_path):
    path = tmp_path / "ms_clip" / "b32-yfcc.yaml"
    path.parent.mkdir()
    path.write_text("hub_repo: [unclosed\n", encoding="utf-8")
    with pytest.raises(CardError, match=re.escape(f"{path}: not valid YAML")):
        load_card(path)
    path.write_text("- just a list\n", encoding="utf-8")
    with pytest.raises(CardError, match=re.escape(f"{path}: expected a mapping (CheckpointCard), got list")):
        load_card(path)


# ----------------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------------


def test_every_card_renders_metadata_that_loads_back(all_cards, tmp_path):
    available = _families_with_converter()
    for card in all_cards:
        path = tmp_path / f"{card.family}-{card.variant}.md"
        render_model_card(card).save(path)
        loaded = ModelCard.load(path)
        data = loaded.data
        assert data.license == LICENSES[card.license]
        if card.license == NOT_STATED:
            assert (data.license_name, data.license_link) == ("not-stated", card.source.repository)
        assert data.pipeline_tag == card.pipeline_tag and data.library_name == "transformers"
        assert data.tags == card.tags
        assert data.datasets == (card.datasets or None)
        results = data.eval_results or []
        # the model-index groups the results by task, dataset and split: compare them as collections
        loaded_results = [
            (r.task_type, r.dataset_type, r.dataset_name, r.dataset_split or "", r.metric_type, r.metric_value,
             r.metric_name) for r in results
        ]  # fmt: skip
        assert sorted(loaded_results) == sorted(
            (r.task, r.dataset_id, r.dataset, r.split or "", r.metric_id, float(r.value), f"{r.metric} [{r.source}]")
            for r in card.results
        )
        assert ("model-index" in data.to_dict()) == bool(card.results)
        text = loaded.text
        for result in card.results:
            assert f"| {result.value} |" in text
        assert card.paper.url in text and card.source.url in text
        expect_available = card.family in available and card.unsupported is None
        assert card_status(card) == (STATUS_AVAILABLE if expect_available else STATUS_NOT_AVAILABLE)
        if expect_available:
            assert f'{card.head_class}.from_pretrained("{card.hub_repo}")' in text
            assert f'AutoModel.from_pretrained("{card.hub_repo}", trust_remote_code=True)' in text
            assert "not available yet" not in text
        else:
            assert "Conversion not available yet" in text
        assert "No conversion of this checkpoint has been checked" in text  # no parity recorded yet


def test_unregistered_families_render_not_available(monkeypatch):
    card = load_card(SAMPLE)
    monkeypatch.setattr(cards, "_families_with_converter", lambda: set())
    assert card_status(card) == STATUS_NOT_AVAILABLE
    text = render_model_card(card).text
    assert "Conversion not available yet" in text and "trust_remote_code=True" in text
    assert f'{card.head_class}.from_pretrained("{card.hub_repo}")' not in text
    monkeypatch.setattr(cards, "_families_with_converter", lambda: {card.family})
    assert card_status(card) == STATUS_AVAILABLE
    unsupported = replace(card, unsupported="The tower is not implemented.")
    assert card_status(unsupported) == STATUS_NOT_AVAILABLE
    assert "The tower is not implemented." in render_model_card(unsupported).text


def test_token_names_in_card_text_are_shown_not_taken_as_html():
    card = replace(load_card(SAMPLE), preprocessing="<s> tokens </s> padded with <pad>")
    text = render_model_card(card).text
    assert "&lt;s&gt; tokens &lt;/s&gt; padded with &lt;pad&gt;" in text and "<s>" not in text


# ----------------------------------------------------------------------------------------------------------------
# Parity
# ----------------------------------------------------------------------------------------------------------------


def _parity_json(path: Path, *, checkpoint: str = "b32-yfcc-msclips_ckpt.pth", passed: bool = True) -> Path:
    report = ParityReport(
        outputs=[
            OutputComparison("logits_per_image", (2, 3), 1.5e-05, passed),
            OutputComparison("text_embeds", (3, 512), 2.25e-06, True),
        ],
        atol=1e-4,
        metadata={"family": "ms_clip", "variant": "b32-yfcc", "checkpoint": checkpoint, "container": "flat",
                  "reference": "io.safetensors", "torch_version": "2.13.0", "transformers_version": "5.24.0"},
    )  # fmt: skip
    report.to_json(path)
    return path


def test_parity_json_fills_the_card_file(tmp_path):
    path = tmp_path / "ms_clip" / "b32-yfcc.yaml"
    path.parent.mkdir()
    path.write_text(SAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    assert "parity" not in yaml.safe_load(path.read_text())
    card = update_card_parity(path, _parity_json(tmp_path / "parity.json"))
    reloaded = load_card(path)
    assert reloaded == card and reloaded.parity is not None
    assert reloaded.parity.passed is True and reloaded.parity.atol == 1e-4
    assert reloaded.parity.outputs == {"logits_per_image": 1.5e-05, "text_embeds": 2.25e-06}
    assert (reloaded.parity.checkpoint, reloaded.parity.reference) == ("b32-yfcc-msclips_ckpt.pth", "io.safetensors")
    assert replace(reloaded, parity=None) == load_card(SAMPLE)  # nothing else changed
    text = render_model_card(reloaded).text
    assert "Parity passed at atol 0.0001" in text
    assert "| logits_per_image | 1.500e-05 |" in text and "| text_embeds | 2.250e-06 |" in text


def test_a_failed_parity_is_shown_as_failed(tmp_path):
    card = card_with_parity(load_card(SAMPLE), _parity_json(tmp_path / "parity.json", passed=False))
    assert card.parity.passed is False
    assert "Parity FAILED" in render_model_card(card).text


def test_parity_of_another_checkpoint_or_no_report_is_refused(tmp_path):
    other = _parity_json(tmp_path / "other.json", checkpoint="b16-yfcc-msclips_ckpt.pth")
    with pytest.raises(CardError, match="the conversion read 'b16-yfcc-msclips_ckpt.pth'"):
        card_with_parity(load_card(SAMPLE), other)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    with pytest.raises(CardError, match=re.escape(f"{broken}: not a valid parity.json")):
        card_with_parity(load_card(SAMPLE), broken)
    broken.write_text(json.dumps({"passed": True}), encoding="utf-8")
    with pytest.raises(CardError, match="not a parity report"):
        card_with_parity(load_card(SAMPLE), broken)
    broken.write_text(json.dumps({"passed": "yes", "atol": 1e-4, "outputs": {"x": {"max_abs_diff": 0.0}}}))
    with pytest.raises(CardError, match=re.escape(f"{broken}: parity.passed: expected true/false")):
        card_with_parity(load_card(SAMPLE), broken)


def test_write_model_card_into_a_conversion_folder(tmp_path):
    folder = tmp_path / "ms_clip-b32-yfcc"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    _parity_json(folder / "parity.json")
    write_marker(folder, writer="vlzoo convert")
    card = load_card(SAMPLE)
    target = write_model_card(folder, card)
    assert target == folder / "README.md"
    loaded = ModelCard.load(target)
    assert loaded.data.pipeline_tag == card.pipeline_tag
    assert "| logits_per_image | 1.500e-05 |" in loaded.text  # the folder's parity.json
    assert sorted(read_marker(folder)["files"]) == ["README.md", "config.json", "parity.json"]
    write_model_card(folder, card)  # its own card is replaced
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "README.md").write_text("# my notes\n", encoding="utf-8")
    with pytest.raises(FileExistsError, match="vlzoo did not write it"):
        write_model_card(foreign, card)
    assert (foreign / "README.md").read_text() == "# my notes\n"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_model_card(tmp_path / "missing", card)


def test_card_to_dict_leaves_out_unset_optional_fields():
    data = card_to_dict(load_card(SAMPLE))
    assert "parity" not in data and "unsupported" not in data
    assert list(data)[:3] == ["hub_repo", "family", "variant"]


# ----------------------------------------------------------------------------------------------------------------
# The README table
# ----------------------------------------------------------------------------------------------------------------


def test_readme_table_is_rendered_from_the_cards(all_cards):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme_with_model_table(readme, render_model_table(all_cards)) == readme, (
        "README.md's released-checkpoints table differs from model_cards/: run `python -m vlzoo.hub.cards`"
    )
    for card in all_cards:
        assert f"| `{card.hub_repo}` | {card.task} | {card.resolution} |" in readme


def test_readme_drift_is_detected(all_cards):
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    changed = [replace(all_cards[0], resolution=all_cards[0].resolution + 1), *all_cards[1:]]
    assert readme_with_model_table(readme, render_model_table(changed)) != readme
    assert readme_with_model_table(readme, render_model_table(all_cards[1:])) != readme
    with pytest.raises(ValueError, match="model-table:start"):
        readme_with_model_table("# no markers\n", render_model_table(all_cards))
