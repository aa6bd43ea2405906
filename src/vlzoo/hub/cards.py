"""Released checkpoints as data: one YAML card per original checkpoint, validated, listed and rendered.

`model_cards/<family>/<variant>.yaml` (top level of the repository, shipped inside the package as
`vlzoo/hub/model_cards`) records what is known about one released original checkpoint: where it comes from, its
licence and paper, its preprocessing and the results its authors claim, and, once a conversion ran, the parity
measured by it. The same data gives the Hub card (`render_model_card`, `write_model_card`), `vlzoo list` /
`vlzoo.list_pretrained()` and the README's table of released checkpoints (`render_model_table`), so they cannot
drift apart.
"""

import json
import math
import pkgutil
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import MISSING, asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CARD_FILE",
    "HUB_ORGANIZATION",
    "LICENSES",
    "NOT_STATED",
    "PIPELINE_TAGS",
    "README_TABLE_END",
    "README_TABLE_START",
    "STATUS_AVAILABLE",
    "STATUS_NOT_AVAILABLE",
    "CardError",
    "CheckpointCard",
    "Paper",
    "ParameterClaim",
    "Parity",
    "PretrainedCheckpoint",
    "Result",
    "Source",
    "card_status",
    "card_to_dict",
    "card_with_parity",
    "cards_dir",
    "dump_card",
    "format_pretrained",
    "hub_repo_name",
    "known_families",
    "list_pretrained",
    "load_card",
    "load_cards",
    "match_card",
    "minimal_pipeline_tag",
    "parity_from_json",
    "readme_with_model_table",
    "render_model_card",
    "render_model_table",
    "sync_readme_model_table",
    "update_card_parity",
    "validate_card",
    "write_minimal_model_card",
    "write_model_card",
    "write_folder_card",
]

HUB_ORGANIZATION = "vlzoo"
CARD_FILE = "README.md"
NOT_STATED = "not stated"
# Card licence -> the Hub's licence identifier; "not stated" is published as `other` with the name `not-stated`.
LICENSES: dict[str, str] = {
    "apache-2.0": "apache-2.0",
    "bsd-3-clause": "bsd-3-clause",
    "mit": "mit",
    NOT_STATED: "other",
}
# The Hub pipeline tags the released checkpoints use (a subset of the Hub's list: a typo must not pass).
PIPELINE_TAGS = frozenset(
    {
        "feature-extraction",
        "image-classification",
        "image-feature-extraction",
        "image-to-text",
        "visual-question-answering",
        "zero-shot-image-classification",
        "zero-shot-object-detection",
    }
)
STATUS_AVAILABLE = "available"
STATUS_NOT_AVAILABLE = "conversion not available yet"
README_TABLE_START = "<!-- model-table:start -->"
README_TABLE_END = "<!-- model-table:end -->"
# Written into every rendered card, so that `write_model_card` recognises a README.md it may replace.
_GENERATED_PREFIX = "<!-- vlzoo model card"
_GENERATED = _GENERATED_PREFIX + ", generated from model_cards/{family}/{variant}.yaml -->"
_GENERATED_MINIMAL = _GENERATED_PREFIX + ", generated without a card file: no model_cards entry matches this model -->"
# A model's head (the task key of `Family.heads`) -> the Hub pipeline tag of a minimal card, as the card files use
# them; a class that is no head is tagged by the transformers Auto class it is registered with, else as features.
HEAD_PIPELINE_TAGS: dict[str, str] = {
    "contrastive": "zero-shot-image-classification",
    "itm": "zero-shot-image-classification",
    "vqa": "visual-question-answering",
    "visual-reasoning": "visual-question-answering",
    "visual-entailment": "visual-question-answering",
    "captioning": "image-to-text",
    "grounding": "zero-shot-object-detection",
    "image-classification": "image-classification",
    "mlm": "feature-extraction",
    "pretraining": "feature-extraction",
}
_AUTO_CLASS_PIPELINE_TAGS: dict[str, str] = {
    "AutoModelForZeroShotImageClassification": "zero-shot-image-classification",
    "AutoModelForImageClassification": "image-classification",
    "AutoModelForVisualQuestionAnswering": "visual-question-answering",
}

_SLUG = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")
_DATASET = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_METRIC = re.compile(r"^[a-z0-9][a-z0-9@._-]*$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_URL = re.compile(r"^https://[^\s]+$")
_ARXIV = re.compile(r"^https://arxiv\.org/abs/\d{4}\.\d{4,5}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_DECIMAL = re.compile(r"^\d+(?:\.\d+)?$")


class CardError(ValueError):
    """A model card file is invalid; the message names the file and the field."""


# ----------------------------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the original checkpoint is published.

    Args:
        url: the download (or folder) address the authors give.
        file: the checkpoint's file name; None where the authors' folder does not show it.
        repository: the authors' code repository.
        commit: the commit of `repository` the specs were written from (40 hex digits), or None.
    """

    url: str
    file: str | None
    repository: str
    commit: str | None


@dataclass(frozen=True)
class Paper:
    """The paper that introduces the model: its title and arXiv abstract page (`https://arxiv.org/abs/NNNN.NNNNN`)."""

    title: str
    url: str
    venue: str


@dataclass(frozen=True)
class Result:
    """One result the authors claim, copied exactly as they state it.

    Args:
        task: Hub task type of the evaluation (`zero-shot-image-classification`, ...), for the card's model-index.
        dataset: dataset name as the authors write it; `dataset_id` is its lowercase identifier.
        split: the split (`val`, `test-dev`, ...); None where the authors name none.
        metric: what is measured, as the authors write it; `metric_id` is its lowercase identifier.
        value: the number as a string, exactly as claimed (`"94.30"` keeps its trailing zero).
        source: where the claim comes from (README table, paper table); numbers the specs quote "from memory" say
            so here.
    """

    task: str
    dataset: str
    dataset_id: str
    split: str | None
    metric: str
    metric_id: str
    value: str
    source: str


@dataclass(frozen=True)
class ParameterClaim:
    """The parameter count the authors state for the checkpoint (e.g. `276M`) and where they state it."""

    value: str
    source: str


@dataclass(frozen=True)
class Parity:
    """What a conversion measured against the original code's outputs (from its `parity.json`).

    Args:
        passed: every compared output within `atol`.
        atol: the tolerance (max absolute difference).
        outputs: output name -> max absolute difference (None where it was not finite).
        checkpoint, reference: the file names the conversion read (no local paths).
        torch_version, transformers_version: the versions it ran with.
    """

    passed: bool
    atol: float
    outputs: dict[str, float | None]
    checkpoint: str | None
    reference: str | None
    torch_version: str | None
    transformers_version: str | None


@dataclass(frozen=True)
class CheckpointCard:
    """One released original checkpoint (`model_cards/<family>/<variant>.yaml`).

    Every field without a default must be present in the file (optional values are written as `null`); `parameters`,
    `training_data`, `notes`, `unsupported` and `parity` may be left out. Unknown keys are refused.

    Args:
        hub_repo: `vlzoo/<family>-<variant>`, also the conversion's output folder name (`hub_repo_name`).
        family: the registry key (`ms_clip`, `beit3`, `meter`, `flava`, `transvg`); the card's folder.
        variant: the card's file name without `.yaml`.
        name: display name.
        task: what the checkpoint does (`contrastive`, `vqa`, `grounding`, `backbone`, ...).
        head_class: the vlzoo model class the checkpoint converts to (`MsClipModel`).
        preset: the family preset (`--variant` of `vlzoo convert`) holding its architecture; None where none does.
        resolution: input image size in pixels.
        source, license, license_note, paper: provenance (`license` is one of `LICENSES`, "not stated" where the
            authors state none; `license_note` says what exactly the authors state).
        pipeline_tag, tags, datasets: Hub metadata (`datasets`: what it was trained on, as the sources state it).
        preprocessing: the original evaluation transform and tokenization, summarised.
        results: the results the authors claim for this checkpoint.
        parameters: the parameter count the authors state, if they state one.
        training_data: what the sources say about the training data beyond `datasets`.
        notes: anything a user of the checkpoint must know.
        unsupported: why vlzoo cannot convert this checkpoint although its family has a converter.
        parity: the parity measured by a conversion (`update_card_parity`); absent until one ran.
    """

    hub_repo: str
    family: str
    variant: str
    name: str
    task: str
    head_class: str
    preset: str | None
    resolution: int
    source: Source
    license: str
    license_note: str
    paper: Paper
    pipeline_tag: str
    tags: list[str]
    datasets: list[str]
    preprocessing: str
    results: list[Result]
    parameters: ParameterClaim | None = None
    training_data: str | None = None
    notes: str | None = None
    unsupported: str | None = None
    parity: Parity | None = None


@dataclass(frozen=True)
class PretrainedCheckpoint:
    """One line of `list_pretrained()` / `vlzoo list`."""

    name: str
    family: str
    variant: str
    task: str
    resolution: int
    preset: str | None
    status: str


def hub_repo_name(family: str, variant: str) -> str:
    """The naming rule: `vlzoo/<family>-<variant>`; the part after `vlzoo/` is the conversion's output folder."""
    return f"{HUB_ORGANIZATION}/{family}-{variant}"


# ----------------------------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin in (list, dict):
        item = typing.get_args(annotation)[-1]
        what = f"items of type {item.__name__}" if isinstance(item, type) else f"items that are {_type_name(item)}"
        return f"a list of {what}" if origin is list else f"a mapping of names to {what}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and hasattr(annotation, "__dataclass_fields__"):
        return f"a mapping ({annotation.__name__})"
    return {str: "a string", int: "an integer", float: "a number", bool: "true/false"}[annotation]


def _got(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:60] + '...' if len(shown) > 60 else shown}"


def _convert(value: Any, annotation: Any, where: str) -> Any:
    """`value` as `annotation` (str, int, float, bool, X | None, list[X], dict[str, X] or a schema dataclass)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        concrete = [option for option in options if option is not type(None)]
        if len(concrete) == 1:
            try:
                return _convert(value, concrete[0], where)
            except CardError as error:
                prefix = f"{where}: expected "  # a nested field's error stays as it is
                if not str(error).startswith(prefix):
                    raise
                raise CardError(f"{prefix}null or {str(error)[len(prefix) :]}") from None
        raise CardError(f"{where}: expected {_type_name(annotation)}, got {_got(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise CardError(f"{where}: expected {_type_name(annotation)}, got {_got(value)}")
        (item,) = typing.get_args(annotation)
        return [_convert(element, item, f"{where}[{i}]") for i, element in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise CardError(f"{where}: expected {_type_name(annotation)}, got {_got(value)}")
        _, item = typing.get_args(annotation)
        for key in value:
            if not isinstance(key, str):
                raise CardError(f"{where}: keys must be strings, got {_got(key)}")
        return {key: _convert(element, item, f"{where}.{key}") for key, element in value.items()}
    if isinstance(annotation, type) and hasattr(annotation, "__dataclass_fields__"):
        return _build(annotation, value, where)
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CardError(f"{where}: expected a number, got {_got(value)}")
        return float(value)
    if annotation is int and isinstance(value, bool):
        raise CardError(f"{where}: expected an integer, got {_got(value)}")
    if not isinstance(value, annotation):
        hint = " (quote the number to keep it exactly as claimed)" if annotation is str and _is_number(value) else ""
        raise CardError(f"{where}: expected {_type_name(annotation)}, got {_got(value)}{hint}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _build(cls: type, data: Any, where: str) -> Any:
    """An instance of the schema dataclass `cls` from a mapping: unknown and missing keys are refused."""
    if not isinstance(data, dict):
        raise CardError(f"{where + ': ' if where else ''}expected {_type_name(cls)}, got {_got(data)}")
    hints = typing.get_type_hints(cls)
    known = {item.name: item for item in fields(cls)}
    unknown = [key for key in data if key not in known]
    if unknown:
        raise CardError(
            f"{where}: unknown key {unknown[0]!r}; {cls.__name__} has the keys {', '.join(known)}"
            if where
            else f"unknown key {unknown[0]!r}; a card has the keys {', '.join(known)}"
        )
    values = {}
    for name, item in known.items():
        path = f"{where}.{name}" if where else name
        if name not in data:
            if item.default is MISSING:
                raise CardError(f"{path}: missing (write `{name}: null` where the value is unknown or absent)")
            continue
        values[name] = _convert(data[name], hints[name], path)
    return cls(**values)


def _require(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise CardError(f"{field}: {message}")


def _check_rules(card: CheckpointCard, family: str | None, variant: str | None) -> None:
    """The rules beyond types: naming, vocabularies, URLs, claimed numbers."""
    known = known_families()
    _require(
        card.family in known, "family", f"unknown family {card.family!r}; known families: {', '.join(sorted(known))}"
    )
    if family is not None:
        _require(card.family == family, "family", f"is {card.family!r} but the card lies in model_cards/{family}/")
    _require(
        bool(_SLUG.match(card.variant)), "variant", f"must be lowercase words joined by '-', got {card.variant!r}"
    )
    if variant is not None:
        _require(card.variant == variant, "variant", f"is {card.variant!r} but the file is named {variant}.yaml")
    expected = hub_repo_name(card.family, card.variant)
    _require(
        card.hub_repo == expected,
        "hub_repo",
        f"expected {expected!r} (the rule is {HUB_ORGANIZATION}/<family>-<variant>), got {card.hub_repo!r}",
    )
    for name in ("name", "license_note", "preprocessing"):
        _require(bool(getattr(card, name).strip()), name, "must not be empty")
    _require(bool(_SLUG.match(card.task)), "task", f"must be a lowercase word joined by '-', got {card.task!r}")
    _require(bool(_IDENTIFIER.match(card.head_class)), "head_class", f"must be a class name, got {card.head_class!r}")
    _require(card.preset is None or bool(card.preset.strip()), "preset", "must be null or a preset name")
    _require(card.resolution > 0, "resolution", f"must be a positive number of pixels, got {card.resolution}")
    for name in ("url", "repository"):
        value = getattr(card.source, name)
        _require(bool(_URL.match(value)), f"source.{name}", f"must be an https:// address, got {value!r}")
    if card.source.commit is not None:
        _require(bool(_COMMIT.match(card.source.commit)), "source.commit", "must be 40 lowercase hex digits")
    _require(
        card.license in LICENSES,
        "license",
        f"must be one of {', '.join(map(repr, LICENSES))}, got {card.license!r}",
    )
    _require(
        bool(_ARXIV.match(card.paper.url)), "paper.url", f"must be an arXiv abstract page, got {card.paper.url!r}"
    )
    _require(bool(card.paper.title.strip()), "paper.title", "must not be empty")
    _require(
        card.pipeline_tag in PIPELINE_TAGS,
        "pipeline_tag",
        f"must be one of {', '.join(sorted(PIPELINE_TAGS))}, got {card.pipeline_tag!r}",
    )
    _require(HUB_ORGANIZATION in card.tags, "tags", f"must include {HUB_ORGANIZATION!r}")
    for i, tag in enumerate(card.tags):
        _require(bool(_TAG.match(tag)), f"tags[{i}]", f"must be lowercase without spaces, got {tag!r}")
    _require(len(set(card.tags)) == len(card.tags), "tags", "lists a tag twice")
    for i, dataset in enumerate(card.datasets):
        _require(bool(_DATASET.match(dataset)), f"datasets[{i}]", f"must be a lowercase identifier, got {dataset!r}")
    for i, result in enumerate(card.results):
        where = f"results[{i}]"
        _require(bool(_SLUG.match(result.task)), f"{where}.task", f"must be a Hub task type, got {result.task!r}")
        _require(bool(_DATASET.match(result.dataset_id)), f"{where}.dataset_id", "must be a lowercase identifier")
        _require(bool(_METRIC.match(result.metric_id)), f"{where}.metric_id", "must be a lowercase identifier")
        _require(
            bool(_DECIMAL.match(result.value)), f"{where}.value", f"must be a decimal number, got {result.value!r}"
        )
        for name in ("dataset", "metric", "source"):
            _require(bool(getattr(result, name).strip()), f"{where}.{name}", "must not be empty")
    claims = [(r.dataset_id, r.split, r.metric, r.source) for r in card.results]
    _require(len(set(claims)) == len(claims), "results", "lists the same claim twice")
    if card.parameters is not None:
        _require(bool(card.parameters.value.strip()), "parameters.value", "must not be empty")
        _require(bool(card.parameters.source.strip()), "parameters.source", "must not be empty")
    if card.parity is not None:
        _require(math.isfinite(card.parity.atol) and card.parity.atol >= 0, "parity.atol", "must be >= 0")
        _require(bool(card.parity.outputs), "parity.outputs", "must list the compared outputs")


def validate_card(data: Any, path: str | Path = "<card>") -> CheckpointCard:
    """The `CheckpointCard` of a card file's content; a `CardError` names `path` and the faulty field.

    When `path` is `.../<family>/<variant>.yaml`, the card's `family` and `variant` must match it.
    """
    path = Path(path)
    family = path.parent.name if path.suffix == ".yaml" else None
    variant = path.stem if path.suffix == ".yaml" else None
    try:
        card = _build(CheckpointCard, data, "")
        _check_rules(card, family, variant)
    except CardError as error:
        raise CardError(f"{path}: {error}") from None
    return card


def load_card(path: str | Path) -> CheckpointCard:
    """Read and validate one card file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise CardError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None
    return validate_card(data, path)


def cards_dir() -> Path:
    """The folder of the card files: the package's copy (`vlzoo/hub/model_cards`), else the repository's."""
    for candidate in (Path(__file__).parent / "model_cards", Path(__file__).resolve().parents[3] / "model_cards"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        "the model cards are missing: neither vlzoo/hub/model_cards nor the repository's model_cards/ exists"
    )


def load_cards(root: str | Path | None = None, *, family: str | None = None) -> list[CheckpointCard]:
    """Every card under `root` (default `cards_dir()`), sorted by family and variant; optionally one family's."""
    root = Path(root) if root is not None else cards_dir()
    if family is not None:
        known = known_families()
        if family not in known:
            raise ValueError(f"unknown family {family!r}; known families: {', '.join(sorted(known))}")
    paths = sorted(root.glob("*/*.yaml")) if family is None else sorted((root / family).glob("*.yaml"))
    return sorted((load_card(path) for path in paths), key=lambda card: (card.family, card.variant))


def known_families() -> set[str]:
    """The registry's family keys and every family package under `vlzoo.models` (families being added)."""
    from .. import models
    from ..registry import families

    packages = {module.name for module in pkgutil.iter_modules(models.__path__) if module.ispkg}
    return {family.key for family in families()} | packages


# ----------------------------------------------------------------------------------------------------------------
# Writing cards and recording parity
# ----------------------------------------------------------------------------------------------------------------


def card_to_dict(card: CheckpointCard) -> dict[str, Any]:
    """The card as the mapping its file holds (optional fields left out when unset)."""
    data = asdict(card)
    for item in fields(CheckpointCard):
        if item.default is not MISSING and data[item.name] is None:
            del data[item.name]
    return data


def dump_card(card: CheckpointCard) -> str:
    """The card's YAML text, keys in schema order."""
    return yaml.safe_dump(card_to_dict(card), sort_keys=False, allow_unicode=True, width=119)


def parity_from_json(path: str | Path) -> Parity:
    """The `Parity` of a conversion's `parity.json` (written by `vlzoo.conversion`'s `ParityReport`)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"{path}: not a valid parity.json ({type(error).__name__})") from None
    if not isinstance(report, dict) or not isinstance(report.get("outputs"), dict):
        raise CardError(f"{path}: not a parity report (expected a mapping with 'outputs')")
    metadata = report.get("metadata") if isinstance(report.get("metadata"), dict) else {}
    outputs = {}
    for name, output in report["outputs"].items():
        if not isinstance(output, dict) or "max_abs_diff" not in output:
            raise CardError(f"{path}: outputs.{name}: expected a mapping with 'max_abs_diff'")
        outputs[name] = output["max_abs_diff"]
    data = {
        "passed": report.get("passed"),
        "atol": report.get("atol"),
        "outputs": outputs,
        **{key: metadata.get(key) for key in ("checkpoint", "reference", "torch_version", "transformers_version")},
    }
    try:
        return _build(Parity, data, "parity")
    except CardError as error:
        raise CardError(f"{path}: {error}") from None


def card_with_parity(card: CheckpointCard, parity_json: str | Path) -> CheckpointCard:
    """`card` with its `parity` taken from a conversion's `parity.json`."""
    parity = parity_from_json(parity_json)
    if parity.checkpoint is not None and card.source.file is not None and parity.checkpoint != card.source.file:
        raise CardError(
            f"{parity_json}: the conversion read {parity.checkpoint!r}, but card {card.hub_repo} is about "
            f"{card.source.file!r}"
        )
    return replace(card, parity=parity)


def update_card_parity(card_path: str | Path, parity_json: str | Path) -> CheckpointCard:
    """Record a conversion's `parity.json` in the card file `card_path` (rewritten in schema order)."""
    card = card_with_parity(load_card(card_path), parity_json)
    validate_card(card_to_dict(card), card_path)
    Path(card_path).write_text(dump_card(card), encoding="utf-8")
    return card


# ----------------------------------------------------------------------------------------------------------------
# Status and the list
# ----------------------------------------------------------------------------------------------------------------


def _families_with_converter() -> set[str]:
    """Registered families that have a converter, read from the registry at each call (families are being added)."""
    from ..registry import families

    return {family.key for family in families() if family.converter is not None}


def card_status(card: CheckpointCard) -> str:
    """`available` when the card's family is registered with a converter that handles it, else not available yet."""
    if card.family in _families_with_converter() and card.unsupported is None:
        return STATUS_AVAILABLE
    return STATUS_NOT_AVAILABLE


def list_pretrained(family: str | None = None) -> list[PretrainedCheckpoint]:
    """Every released original checkpoint vlzoo has a card for, with its task, resolution and status.

    Args:
        family: a registry key (`ms_clip`, ...) to list only that family's checkpoints.

    Example:
        >>> import vlzoo
        >>> [entry.name for entry in vlzoo.list_pretrained("ms_clip")][:1]
        ['vlzoo/ms_clip-b16-yfcc']
    """
    available = _families_with_converter()
    return [
        PretrainedCheckpoint(
            name=card.hub_repo,
            family=card.family,
            variant=card.variant,
            task=card.task,
            resolution=card.resolution,
            preset=card.preset,
            status=STATUS_AVAILABLE if card.family in available and card.unsupported is None else STATUS_NOT_AVAILABLE,
        )
        for card in load_cards(family=family)
    ]


# ----------------------------------------------------------------------------------------------------------------
# The Hub card
# ----------------------------------------------------------------------------------------------------------------

_TEMPLATE = """---
{{ card_data }}
---

{{ generated }}

# {{ title }}

{{ summary }}
{% if not available %}
> **{{ not_available }}**: {{ not_available_reason }}
{% endif %}
| | |
|---|---|
| family | {{ family }} |
| task | {{ task }} |
| preset | {{ preset }} |
| resolution | {{ resolution }} px |
| original checkpoint | {{ original }} |
| original code | {{ repository }} |
| licence | {{ license }} |
| paper | {{ paper }} |
{% if parameters %}| parameters (claimed) | {{ parameters }} |
{% endif %}
## How to use
{% if available %}
With vlzoo installed (`pip install vlzoo`), `import vlzoo` registers the family with transformers:

```python
import vlzoo
from transformers import AutoProcessor
from vlzoo import {{ head_class }}

model = {{ head_class }}.from_pretrained("{{ repo }}")
processor = AutoProcessor.from_pretrained("{{ repo }}")
```

Without vlzoo, the folder's own code (published with it) is loaded by transformers:

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{{ repo }}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{{ repo }}", trust_remote_code=True)
```

The converted folder `{{ folder }}` loads the same way from a local path.
{% else %}
{{ not_available }}: {{ not_available_reason }} Once it is, `vlzoo convert {{ family }}` writes the folder
`{{ folder }}`, which loads with `{{ head_class }}.from_pretrained` (with vlzoo) or
`AutoModel.from_pretrained(..., trust_remote_code=True)` (without).
{% endif %}
## Preprocessing

{{ preprocessing }}
{% if training_data %}
## Training data

{{ training_data }}
{% endif %}
## Results claimed by the authors

{{ results }}

## Parity with the original code

{{ parity }}
{% if notes %}
## Notes

{{ notes }}
{% endif %}
## Citation

{{ citation }}
"""


def _prose(text: Any) -> str:
    """Card text as Markdown prose: `<s>` and friends (token names) must show, not become HTML tags."""
    return str(text).strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cell(text: Any) -> str:
    """Text for one Markdown table cell."""
    return " ".join(_prose(text).split()).replace("|", "\\|")


def _results_table(card: CheckpointCard) -> str:
    if not card.results:
        return "The authors state no results for this checkpoint."
    rows = ["| dataset | split | metric | value | source |", "|---|---|---|---|---|"]
    rows += [
        f"| {_cell(r.dataset)} | {_cell(r.split or '-')} | {_cell(r.metric)} | {r.value} | {_cell(r.source)} |"
        for r in card.results
    ]
    return "\n".join(rows)


def _parity_table(card: CheckpointCard) -> str:
    return _parity_text(card.parity)


def _parity_text(parity: Parity | None) -> str:
    """The card section on parity: the outputs compared and their differences, or that none was measured."""
    if parity is None:
        return (
            "No conversion of this checkpoint has been checked against the original code's outputs yet "
            "(`vlzoo convert ... --verify-against io.safetensors` writes `parity.json`)."
        )
    verdict = "passed" if parity.passed else "FAILED"
    context = ", ".join(
        f"{label} {_cell(value)}"
        for label, value in (
            ("checkpoint", parity.checkpoint),
            ("reference outputs", parity.reference),
            ("torch", parity.torch_version),
            ("transformers", parity.transformers_version),
        )
        if value is not None
    )
    rows = [
        f"Parity {verdict} at atol {parity.atol:g}" + (f" ({context})." if context else "."),
        "",
        "| output | max abs diff |",
        "|---|---|",
    ]
    rows += [
        f"| {_cell(name)} | {f'{diff:.3e}' if diff is not None else 'not finite'} |"
        for name, diff in parity.outputs.items()
    ]
    return "\n".join(rows)


def _card_data(card: CheckpointCard) -> Any:
    from huggingface_hub import EvalResult, ModelCardData

    license_fields: dict[str, Any] = {"license": LICENSES[card.license]}
    if card.license == NOT_STATED:
        license_fields.update(license_name="not-stated", license_link=card.source.repository)
    eval_results = [
        EvalResult(
            task_type=result.task,
            dataset_type=result.dataset_id,
            dataset_name=result.dataset,
            dataset_split=result.split,
            metric_type=result.metric_id,
            metric_name=f"{result.metric} [{result.source}]",
            metric_value=float(result.value),
        )
        for result in card.results
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=card.pipeline_tag,
        tags=list(card.tags),
        datasets=list(card.datasets) or None,
        model_name=card.hub_repo,
        eval_results=eval_results or None,
        **license_fields,
    )


def render_model_card(card: CheckpointCard) -> Any:
    """The Hub card (`huggingface_hub.ModelCard`) of `card`: metadata, how to load it, claims, parity.

    A card whose family is not registered with a converter yet is marked "conversion not available yet".
    """
    from huggingface_hub import ModelCard

    status = card_status(card)
    available = status == STATUS_AVAILABLE
    reason = card.unsupported or "vlzoo does not convert this family's checkpoints yet."
    original = f"[{card.source.file}]({card.source.url})" if card.source.file else f"<{card.source.url}>"
    parameters = f"{card.parameters.value} ({card.parameters.source})" if card.parameters else None
    return ModelCard.from_template(
        _card_data(card),
        template_str=_TEMPLATE,
        generated=_GENERATED.format(family=card.family, variant=card.variant),
        title=_prose(card.name),
        summary=f"`{card.hub_repo}`: the released original checkpoint "
        + ("converted to a transformers model by vlzoo." if available else "as vlzoo records it, not converted yet."),
        available=available,
        not_available=STATUS_NOT_AVAILABLE[0].upper() + STATUS_NOT_AVAILABLE[1:],
        not_available_reason=_prose(reason),
        family=card.family,
        task=card.task,
        preset=f"`{card.preset}`" if card.preset else "-",
        resolution=card.resolution,
        original=original,
        repository=card.source.repository + (f" (commit `{card.source.commit[:7]}`)" if card.source.commit else ""),
        license=_cell(f"{card.license}: {card.license_note}"),
        paper=f"[{card.paper.title}]({card.paper.url}), {card.paper.venue}",
        parameters=parameters,
        head_class=card.head_class,
        repo=card.hub_repo,
        folder=card.hub_repo.split("/", 1)[1],
        preprocessing=_prose(card.preprocessing),
        training_data=_prose(card.training_data or ""),
        results=_results_table(card),
        parity=_parity_table(card),
        notes=_prose(card.notes or ""),
        citation=f"{card.paper.title}. {card.paper.venue}. {card.paper.url}",
    )


def write_model_card(folder: str | Path, card: CheckpointCard) -> Path:
    """Write `card` as README.md into a converted (or saved) model folder; returns the README's path.

    The folder's `parity.json`, when a conversion wrote one, fills the card's parity. The folder's vlzoo output
    record (`.vlzoo-output.json`) then lists README.md too. A README.md that vlzoo did not write is never replaced.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (write the model first)")
    if (folder / "parity.json").is_file():
        card = card_with_parity(card, folder / "parity.json")
    target = folder / CARD_FILE
    _check_replaceable(folder)
    render_model_card(card).save(target)
    _record_card(folder)
    return target


def _check_replaceable(folder: Path) -> None:
    """Refuse to write over a README.md of `folder` that vlzoo did not write (its marker or text says so)."""
    from ..conversion.output_dir import read_marker

    target = folder / CARD_FILE
    if not (target.exists() or target.is_symlink()):
        return
    marker = read_marker(folder)
    ours = target.is_file() and _GENERATED_PREFIX in target.read_text(encoding="utf-8", errors="replace")
    if not ours and (marker is None or CARD_FILE not in marker["files"]):
        raise FileExistsError(
            f"{target} exists and vlzoo did not write it; move it away to write the model card there"
        )


def match_card(
    family: str,
    *,
    head_class: str,
    checkpoint: str | None = None,
    variant: str | None = None,
    parity_checked: bool = False,
    root: str | Path | None = None,
) -> CheckpointCard | None:
    """The card of `family` that describes a converted checkpoint, or None when no card (or more than one) fits.

    A card fits when it converts to `head_class` and names the checkpoint's file name (`checkpoint`, a file name;
    several such cards are told apart by `variant`); else when `variant` is its variant or preset and no other card
    of the family has it. A card naming another file fits by variant only when no parity was measured
    (`parity_checked`): the recorded parity would be about another file.
    """
    if not isinstance(head_class, str) or not head_class:
        raise ValueError(f"head_class must be a model class name, got {head_class!r}")
    # a card that states the checkpoint cannot be converted does not describe a conversion
    candidates = [
        card for card in load_cards(root, family=family) if card.head_class == head_class and card.unsupported is None
    ]
    by_variant = [card for card in candidates if variant is not None and variant in (card.variant, card.preset)]
    if checkpoint is not None:
        by_file = [card for card in candidates if card.source.file == checkpoint]
        if len(by_file) > 1:
            by_file = [card for card in by_file if card in by_variant]
        if by_file:
            return by_file[0] if len(by_file) == 1 else None
    fitting = [card for card in by_variant if card.source.file is None or not parity_checked]
    return fitting[0] if len(fitting) == 1 else None


def minimal_pipeline_tag(model_class: type) -> str | None:
    """The Hub pipeline tag of a minimal card for a model of `model_class` (None for a class of no vlzoo family)."""
    from ..registry import families

    for family in families():
        for head, cls in family.heads.items():
            if cls is model_class and head in HEAD_PIPELINE_TAGS:
                return HEAD_PIPELINE_TAGS[head]
        for auto_name, cls in family.auto_models.items():
            if cls is model_class and auto_name in _AUTO_CLASS_PIPELINE_TAGS:
                return _AUTO_CLASS_PIPELINE_TAGS[auto_name]
        if model_class in family.model_classes:
            return "feature-extraction"
    return None


_MINIMAL_TEMPLATE = """---
{{ card_data }}
---

{{ generated }}

# {{ title }}

{{ description }}

No card of vlzoo's `model_cards/` describes this model, so no licence or provenance is recorded here: the licence is
unknown until the owner of the weights (for converted weights, their original authors) states one.

| | |
|---|---|
| family | {{ family }} |
| model class | `{{ model_class }}` |

## How to use
{% if family_key %}
With vlzoo installed (`pip install vlzoo`):

```python
import vlzoo
from transformers import AutoProcessor
from vlzoo import {{ model_class }}

model = {{ model_class }}.from_pretrained("{{ repo }}")
processor = AutoProcessor.from_pretrained("{{ repo }}")
```

Without vlzoo, a folder that carries its remote code (`vlzoo publish` adds it; `vlzoo convert --remote-code`) loads
through transformers:

```python
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{{ repo }}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{{ repo }}", trust_remote_code=True)
```
{% else %}
```python
from transformers import AutoModel

model = AutoModel.from_pretrained("{{ repo }}")
```
{% endif %}
## Parity with the original code

{{ parity }}
"""


def _folder_model(folder: Path) -> tuple[str | None, str | None]:
    """(the class name config.json's `architectures` names, the model_type) of a saved folder, None where absent."""
    path = folder / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} has no config.json; save the model there first")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}; expected an object")
    architectures = config.get("architectures")
    valid = isinstance(architectures, list) and architectures and isinstance(architectures[0], str)
    model_type = config.get("model_type")
    return architectures[0] if valid else None, model_type if isinstance(model_type, str) else None


def write_minimal_model_card(folder: str | Path, *, description: str, repo: str | None = None) -> Path:
    """Write a minimal README.md into a saved model folder that no card file describes; returns its path.

    Its metadata is valid Hub metadata (library, tags, the pipeline tag of the model's head, licence `other` named
    `unknown`), it says how to load the folder, and the folder's `parity.json`, when a conversion wrote one, fills the
    parity section. A README.md that vlzoo did not write is never replaced.

    Args:
        folder: the saved folder (its config.json names the model class in `architectures`).
        description: one paragraph on where the weights come from (converted from what, trained how).
        repo: the name the how-to-use snippets load (default: the folder's name).
    """
    from huggingface_hub import ModelCard, ModelCardData

    from ..registry import families

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} does not exist (write the model first)")
    if not isinstance(description, str) or not description.strip():
        raise ValueError(f"description must be a non-empty text on where the weights come from, got {description!r}")
    class_name, model_type = _folder_model(folder)
    family = next((family for family in families() if family.model_type == model_type), None)
    model_class = None
    if family is not None:
        model_class = next((cls for cls in family.model_classes if cls.__name__ == class_name), None)
    parity = parity_from_json(folder / "parity.json") if (folder / "parity.json").is_file() else None
    tags = ["vlzoo", *([family.key] if family is not None else [])]
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag=minimal_pipeline_tag(model_class) if model_class is not None else None,
        tags=tags,
        license="other",
        license_name="unknown",
    )
    _check_replaceable(folder)
    card = ModelCard.from_template(
        data,
        template_str=_MINIMAL_TEMPLATE,
        generated=_GENERATED_MINIMAL,
        title=_prose(" ".join(part for part in (family.name if family else None, class_name) if part) or "Model"),
        description=_prose(description),
        family=f"{family.name} (`{family.key}`)" if family is not None else "-",
        family_key=family.key if family is not None and class_name else None,
        model_class=class_name or "-",
        repo=repo or folder.name,
        parity=_parity_text(parity),
    )
    target = folder / CARD_FILE
    card.save(target)
    _record_card(folder)
    return target


def _record_card(folder: Path) -> None:
    """Add README.md to the files the folder's vlzoo output record lists, when the folder has one."""
    from ..conversion.output_dir import read_marker, write_marker

    marker = read_marker(folder)
    if marker is not None and CARD_FILE not in marker["files"]:
        write_marker(folder, writer=str(marker.get("writer", "vlzoo")), files=[*marker["files"], CARD_FILE])


def write_folder_card(
    folder: str | Path,
    *,
    description: str,
    checkpoint: str | None = None,
    variant: str | None = None,
    repo: str | None = None,
    root: str | Path | None = None,
) -> tuple[Path, CheckpointCard | None]:
    """Write the folder's README.md: the card of `model_cards/` that matches it (`match_card`), else a minimal one.

    Returns the README's path and the card used (None for a minimal card).

    Args:
        folder: a saved model folder of a vlzoo family (config.json with `architectures`).
        description: where the weights come from, for a minimal card.
        checkpoint: the original checkpoint's file name, matched against the cards' `source.file`.
        variant: the conversion's variant, matched against the cards' variant and preset.
        repo: the name a minimal card's snippets load (default: the folder's name).
        root: the card files' folder (default `cards_dir()`; without card files every card is a minimal one).
    """
    from ..registry import families

    folder = Path(folder)
    class_name, model_type = _folder_model(folder)
    family = next((family for family in families() if family.model_type == model_type), None)
    card = None
    try:
        if family is not None and class_name is not None:
            card = match_card(
                family.key,
                head_class=class_name,
                checkpoint=checkpoint,
                variant=variant,
                parity_checked=(folder / "parity.json").is_file(),
                root=root,
            )
    except FileNotFoundError:  # no card files (an installation without them): the minimal card
        card = None
    if card is not None:
        return write_model_card(folder, card), card
    return write_minimal_model_card(folder, description=description, repo=repo), None


# ----------------------------------------------------------------------------------------------------------------
# The README table
# ----------------------------------------------------------------------------------------------------------------

_README_INTRO = (
    "Every released original checkpoint has a card in `model_cards/<family>/<variant>.yaml` (source, licence, "
    "paper, preprocessing, the authors' claims); `vlzoo list` shows which ones convert today, and TransVG++ has no "
    "card because its authors released no grounding weights."
)


def _headline(card: CheckpointCard) -> str:
    if not card.results:
        return "-"
    first = card.results[0]
    split = f" {first.split}" if first.split else ""
    more = f" (+{len(card.results) - 1} more)" if len(card.results) > 1 else ""
    return _cell(f"{first.dataset}{split} {first.metric} {first.value}{more}")


def render_model_table(cards: Sequence[CheckpointCard] | None = None) -> str:
    """The README's "Released checkpoints" section (between the model-table markers), from the card data."""
    cards = load_cards() if cards is None else cards
    rows = [
        "## Released checkpoints",
        "",
        _README_INTRO,
        "",
        "| checkpoint | task | resolution | original file | licence | claimed (first of the card's results) |",
        "|---|---|---|---|---|---|",
    ]
    for card in cards:
        original = f"[{_cell(card.source.file or 'folder')}]({card.source.url})"
        rows.append(
            f"| `{card.hub_repo}` | {card.task} | {card.resolution} | {original} | {card.license} | "
            f"{_headline(card)} |"
        )
    return "\n".join(rows)


def readme_with_model_table(readme: str, table: str) -> str:
    """`readme` with the text between the model-table markers replaced by `table`."""
    start, end = readme.find(README_TABLE_START), readme.find(README_TABLE_END)
    if start < 0 or end < start or readme.count(README_TABLE_START) != 1 or readme.count(README_TABLE_END) != 1:
        raise ValueError(
            f"the README must hold {README_TABLE_START} and then {README_TABLE_END}, once each, around the table"
        )
    return readme[: start + len(README_TABLE_START)] + "\n" + table + "\n" + readme[end:]


def sync_readme_model_table(readme: str | Path, *, check: bool = False) -> bool:
    """Render the released-checkpoints table into `readme`; returns True when the file was (or, with `check`,
    would be) changed. With `check` nothing is written."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    updated = readme_with_model_table(text, render_model_table())
    if updated != text and not check:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def _as_rows(entries: Sequence[PretrainedCheckpoint]) -> list[dict[str, Any]]:
    return [asdict(entry) for entry in entries]


def format_pretrained(entries: Sequence[PretrainedCheckpoint], *, as_json: bool = False) -> str:
    """What `vlzoo list` prints: an aligned table, or a JSON list of objects."""
    if as_json:
        return json.dumps(_as_rows(entries), indent=2)
    header = ("name", "family", "variant", "task", "resolution", "status")
    rows = [header, *((e.name, e.family, e.variant, e.task, str(e.resolution), e.status) for e in entries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def _readme_path() -> Path:
    return Path(__file__).resolve().parents[3] / "README.md"


if __name__ == "__main__":  # python -m vlzoo.hub.cards: re-render the README's table after editing the cards
    print("README.md updated" if sync_readme_model_table(_readme_path()) else "README.md already up to date")
