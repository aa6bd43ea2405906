"""The one conversion path every family follows, and its command-line front end."""

import argparse
import json
import math
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from huggingface_hub.errors import StrictDataclassError
from transformers import BaseImageProcessor, PreTrainedConfig, PreTrainedModel, ProcessorMixin
from transformers.utils import logging

from vlzoo.layers.positions import resize_position_table_2d

from .errors import ConversionError, ParityError
from .escaping import printable
from .family_check import require_keys
from .key_mapping import KeyMap, MappingReport, Transform, apply_key_map, check_against_model
from .limits import walk_object_graph
from .output_dir import atomic_output_dir, check_output_dir
from .parity import ParityReport, compare_outputs, load_io_tensors
from .safe_load import LoadedCheckpoint, load_checkpoint

logger = logging.get_logger(__name__)

# An inferred architecture may need at most this many times the elements the checkpoint stores (plus a margin for
# buffers the checkpoint does not hold): more means the shapes in the file are inconsistent or hostile, and building
# the model could exhaust memory. A faithful conversion needs at most what is stored.
_MAX_MODEL_GROWTH = 2
_MODEL_SIZE_MARGIN = 1_000_000
# An original training config (a yacs/YAML dump) is a few levels deep and at most a few thousand values.
_MAX_CONFIG_DEPTH = 32
_MAX_CONFIG_VALUES = 100_000

# The help of `--tokenizer`, one text for every family (`vlzoo convert FAMILY --help` and each convert.py).
TOKENIZER_HELP = (
    "the original tokenizer, saved with the processor so that AutoProcessor loads the folder: for BEiT-3 the "
    "released sentencepiece file beit3.spm; for METER a folder holding roberta-base's vocab.json and merges.txt (or "
    "a tokenizer folder AutoTokenizer loads offline). Without it BEiT-3 and METER save their image processor alone. "
    "MS-CLIP, FLAVA, TransVG and TransVG++ ship their tokenizer with vlzoo and refuse this option"
)

__all__ = [
    "TOKENIZER_HELP",
    "ConversionResult",
    "FamilyConverter",
    "add_common_cli_arguments",
    "convert_checkpoint",
    "eager_attention",
    "run_cli",
    "run_from_args",
]


class FamilyConverter(ABC):
    """What a family supplies to :func:`convert_checkpoint`: a key table, config inference and its model classes.

    What every family would otherwise repeat is done here: the checkpoint's other top-level entries (e.g. the
    training ``args`` TransVG and BEiT-3 store) reach :meth:`infer_config` as ``extra``; shared tensor transforms
    (:func:`~vlzoo.conversion.transpose`, :func:`~vlzoo.conversion.split_qkv`); position tables whose grid differs
    from the model's are resized by :meth:`resize_position_embeddings` (``position_tables``); parity runs with eager
    attention (:func:`eager_attention`); and :func:`run_cli` is the command line of every ``convert.py``.

    Class attributes:
        family: display name used in messages and reports (e.g. "MS-CLIP").
        variants: released variant names accepted by ``--variant`` (e.g. preset names); empty = no variants.
        required_keys: regex patterns every checkpoint of the family contains (checked before anything else).
        strip_prefixes: key prefixes removed at load time (e.g. ``("model.",)`` for a Lightning wrapper).
        position_tables: model-key regex -> leading rows that are not grid cells (a class token: 1), for the 2-D
            position tables a checkpoint may store at another resolution than the model's (fine-tuned at 384 px from
            a 224 px table, METER's 288 px CLIP tower).
    """

    family: str = ""
    variants: tuple[str, ...] = ()
    required_keys: tuple[str, ...] = ()
    strip_prefixes: tuple[str, ...] = ()
    position_tables: Mapping[str, int] = {}

    @abstractmethod
    def infer_config(
        self,
        state_dict: dict[str, torch.Tensor],
        *,
        original_config: dict | None,
        variant: str | None,
        extra: dict[str, Any],
    ) -> PreTrainedConfig:
        """Build the config from tensor shapes, the original config, the variant and/or ``extra`` (the checkpoint's
        other top-level entries as plain data, e.g. its training ``args``); raise when undecidable."""

    @abstractmethod
    def key_map(self, config: PreTrainedConfig) -> KeyMap:
        """The ordered ``(pattern, replacement)`` table from original keys to the model's keys."""

    def transforms(self, config: PreTrainedConfig) -> dict[str, Transform]:
        """Target-name pattern -> tensor transform (transpose, fused-qkv split); none by default."""
        return {}

    def check_state_dict(self, state_dict: dict[str, torch.Tensor], config: PreTrainedConfig) -> None:
        """Extra checks on the original tensors (e.g. that duplicated shared tensors are equal); none by default."""
        return None

    @abstractmethod
    def build_model(self, config: PreTrainedConfig) -> PreTrainedModel:
        """A freshly initialised model for ``config`` (its ``__init__`` ends with ``self.post_init()``)."""

    def check_tokenizer(self, tokenizer: Path) -> None:
        """Refuse an unusable ``--tokenizer`` before the checkpoint is read, so a bad path costs nothing and writes
        nothing. By default a family takes none: its tokenizer ships with vlzoo and is saved without user files.

        Raises:
            ValueError, FileNotFoundError: naming ``--tokenizer`` and what the family expects.
        """
        raise ValueError(
            f"--tokenizer {printable(tokenizer)}: {self.family} takes no tokenizer files (its tokenizer ships with "
            "vlzoo and is saved with every conversion); leave --tokenizer out"
        )

    def build_processor(
        self, config: PreTrainedConfig, tokenizer: Path | None = None
    ) -> ProcessorMixin | BaseImageProcessor | None:
        """What is saved next to the model so that ``AutoProcessor`` (or at least ``AutoImageProcessor``) loads the
        folder: the processor, an image processor alone when the tokenizer needs files the user did not give, or None.

        ``tokenizer`` is the ``--tokenizer`` path, already accepted by :meth:`check_tokenizer`; it is passed only
        when given, so overrides written before it existed (``build_processor(self, config)``) keep working.
        """
        return None

    def resize_position_embeddings(
        self, name: str, tensor: torch.Tensor, config: PreTrainedConfig, shape: tuple[int, ...]
    ) -> torch.Tensor:
        """The position table ``name`` (a ``position_tables`` match) resized to the model's ``shape``.

        The common case: the grid rows after the table's prefix rows are a square grid, resized bicubically
        (``align_corners=False``) to the model's square grid; the prefix rows are kept. Override for other grids.
        """
        prefix = next(rows for pattern, rows in self.position_tables.items() if re.fullmatch(pattern, name))
        cells = shape[-2] - prefix
        side = math.isqrt(max(cells, 0))
        if cells < 1 or side * side != cells or len(shape) != tensor.dim():
            raise ConversionError(
                f"cannot resize the position table {printable(name)} {list(tensor.shape)} to the model's "
                f"{list(shape)}: not a square grid after {prefix} prefix row(s)"
            )
        try:
            return resize_position_table_2d(tensor, side, num_prefix_rows=prefix)
        except ValueError as error:
            raise ConversionError(f"cannot resize the position table {printable(name)}: {error}") from None

    @abstractmethod
    def parity_outputs(self, model: PreTrainedModel, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Run ``model`` on the reference ``input.*`` tensors; return outputs named like the ``output.*`` ones."""

    def align_expected(
        self, name: str, expected: torch.Tensor, inputs: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        """The reference tensor as it should be compared (e.g. sliced); None leaves ``name`` out, on record."""
        return expected


@dataclass
class ConversionResult:
    """What :func:`convert_checkpoint` produced."""

    output_dir: Path
    family: str
    variant: str | None
    config: PreTrainedConfig
    container: str
    reader: str
    neutralised: tuple[str, ...]
    mapping_report: MappingReport
    parity_report: ParityReport | None
    resized: tuple[str, ...] = field(default=())


def convert_checkpoint(
    converter: FamilyConverter,
    checkpoint: str | Path,
    output_dir: str | Path,
    *,
    original_config: dict | str | Path | None = None,
    variant: str | None = None,
    verify_against: str | Path | None = None,
    overwrite: bool = False,
    atol: float = 1e-4,
    remote_code: bool = False,
    tokenizer: str | Path | None = None,
) -> ConversionResult:
    """Convert an original checkpoint into a ``save_pretrained`` folder, or fail without writing anything.

    Steps: safe load -> family check -> config inference (from the shapes, the original config, the variant and the
    checkpoint's other entries) -> size check of the inferred model (built on the meta device, so nothing is
    allocated) against the stored elements -> family state-dict checks -> key map (leftovers are an error) ->
    resizing of ``position_tables`` stored at another grid -> strict load into a fresh model
    (missing/unexpected/misshaped keys are an error) -> ``eval()`` -> optional parity against an io.safetensors file
    with eager attention (a failure aborts) -> atomic write of the model (safetensors), the processor,
    ``parity.json``, ``conversion_report.txt``, with ``remote_code`` the code that loads it without vlzoo, and the
    model card README.md (the matching card of ``model_cards/``, else a minimal one: see
    :func:`vlzoo.hub.cards.write_folder_card`).

    Args:
        converter: the family's :class:`FamilyConverter`.
        checkpoint: the original checkpoint file.
        output_dir: the folder to create (must be absent or empty unless ``overwrite``).
        original_config: the original training config, as a dict or a JSON file path.
        variant: a released variant name from ``converter.variants``.
        verify_against: an io.safetensors file of reference inputs/outputs.
        overwrite: replace an ``output_dir`` that vlzoo wrote and that holds nothing else, once the new folder is
            complete; other folders are refused, and the inputs must lie outside ``output_dir``.
        atol: parity tolerance (max absolute difference).
        remote_code: also write the family's code and ``auto_map`` (:func:`vlzoo.hub.add_remote_code`), so the
            folder loads with ``trust_remote_code=True`` where vlzoo is not installed; if that fails, nothing is
            written.
        tokenizer: the original tokenizer files, for families whose tokenizer does not ship with vlzoo (BEiT-3's
            ``beit3.spm``, a folder with METER's roberta-base ``vocab.json`` and ``merges.txt``); checked by
            :meth:`FamilyConverter.check_tokenizer` before anything is read, and saved with the processor. Without
            it such a family saves its image processor alone.

    Raises:
        ConversionError: wrong family, leftover/missing/unexpected/misshaped keys; ``ParityError`` on parity failure.
        ValueError, FileNotFoundError, FileExistsError: unusable arguments or files.
    """
    if not isinstance(converter, FamilyConverter):
        raise TypeError(f"converter must be a FamilyConverter, got {type(converter).__name__}")
    if not isinstance(converter.family, str) or not converter.family:
        raise TypeError(
            f"{type(converter).__name__}.family must be a non-empty display name, got {converter.family!r}"
        )
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a non-negative number, got {atol!r}")
    _check_variant(converter, variant)
    # The inputs must lie outside the output folder: replacing it must never delete them.
    if tokenizer is not None and not isinstance(tokenizer, (str, Path)):
        raise TypeError(f"tokenizer must be a file or folder path, got {type(tokenizer).__name__}")
    tokenizer = Path(tokenizer) if tokenizer is not None else None
    inputs = (
        checkpoint,
        original_config if isinstance(original_config, (str, Path)) else None,
        verify_against,
        tokenizer,
    )
    check_output_dir(output_dir, overwrite=overwrite, inputs=inputs)
    if tokenizer is not None:
        converter.check_tokenizer(tokenizer)
    config_dict = _read_original_config(original_config)

    loaded = load_checkpoint(checkpoint, strip_prefixes=tuple(converter.strip_prefixes))
    state_dict = loaded.state_dict
    require_keys(state_dict, family=converter.family, required=converter.required_keys)
    try:
        config = converter.infer_config(state_dict, original_config=config_dict, variant=variant, extra=loaded.extra)
    except StrictDataclassError as error:
        # huggingface_hub wraps the config's own ValueError; keep its message, on one line.
        raise ConversionError(
            f"the {converter.family} architecture inferred from {checkpoint}{_with_config(original_config)} is not "
            f"valid: {printable(' '.join(str(error).split()), limit=500)}"
        ) from None
    except (ValueError, TypeError) as error:
        raise ConversionError(
            f"cannot infer the {converter.family} architecture of {checkpoint}{_with_config(original_config)}: {error}"
        ) from None
    _check_model_size(converter, config, state_dict, checkpoint)
    converter.check_state_dict(state_dict, config)

    mapped, mapping_report = apply_key_map(
        state_dict, converter.key_map(config), transforms=converter.transforms(config)
    )
    if mapping_report.unmatched:
        raise ConversionError(
            f"{len(mapping_report.unmatched)} keys of {checkpoint} are not covered by the {converter.family} key map "
            f"(neither mapped nor deliberately dropped):\n{mapping_report.format()}"
        )
    model = converter.build_model(config)
    mapped, resized = _resize_position_tables(converter, config, mapped, model)
    model = _load_strictly(model, mapped, mapping_report)
    model.eval()
    logger.info(f"Loaded {mapping_report.mapped} tensors into {type(model).__name__}")

    parity_report = None
    if verify_against is not None:
        parity_report = _verify(converter, model, Path(verify_against), atol)
        parity_report.metadata = _parity_metadata(converter, Path(checkpoint), Path(verify_against), variant, loaded)
        if not parity_report.passed:
            raise ParityError(
                f"the converted model does not reproduce {verify_against}; nothing was written:\n"
                f"{parity_report.format()}",
                parity_report,
            )
        logger.info(f"Parity against {verify_against} passed at atol={atol:g}")

    # Built before the folder is opened: a tokenizer that does not fit the model is refused with nothing written.
    if tokenizer is None:
        processor = converter.build_processor(config)
    else:
        processor = converter.build_processor(config, tokenizer=tokenizer)
    if isinstance(processor, BaseImageProcessor):
        logger.warning(
            f"Saving the {converter.family} image processor alone (AutoImageProcessor loads the folder); pass "
            "--tokenizer with the original tokenizer files so that AutoProcessor and the pipelines load it too"
        )
    with atomic_output_dir(output_dir, overwrite=overwrite, inputs=inputs, writer="vlzoo convert") as temporary:
        # save_original_format=False: the keys written are exactly the ones checked above.
        model.save_pretrained(temporary, save_original_format=False)
        if processor is not None:
            processor.save_pretrained(temporary)
        if parity_report is not None:
            parity_report.to_json(temporary / "parity.json")
        (temporary / "conversion_report.txt").write_text(
            _conversion_report(converter, Path(checkpoint), variant, loaded, mapping_report, parity_report, resized)
        )
        if remote_code:
            from vlzoo.hub.remote_code import add_remote_code

            add_remote_code(temporary, model=model, processor=processor)
        _write_card(converter, temporary, Path(checkpoint).name, variant, Path(output_dir).name)
    logger.info(f"Wrote the converted {converter.family} model to {output_dir}")
    return ConversionResult(
        output_dir=Path(output_dir),
        family=converter.family,
        variant=variant,
        config=config,
        container=loaded.container,
        reader=loaded.reader,
        neutralised=loaded.neutralised,
        mapping_report=mapping_report,
        parity_report=parity_report,
        resized=resized,
    )


def _write_card(converter: FamilyConverter, folder: Path, checkpoint: str, variant: str | None, name: str) -> None:
    """README.md: the card of `model_cards/` that matches the checkpoint (by family, file name or variant), with the
    parity just measured, else a minimal card; a converted folder never goes without one."""
    from vlzoo.hub.cards import write_folder_card

    described = f"`{printable(checkpoint)}`" + (f" (variant `{variant}`)" if variant else "")
    _, card = write_folder_card(
        folder,
        description=f"Converted from the original {converter.family} checkpoint {described} by `vlzoo convert`.",
        checkpoint=checkpoint,
        variant=variant,
        repo=name,
    )
    logger.info(
        f"Model card: {f'model_cards/{card.family}/{card.variant}.yaml' if card else 'minimal (no card matches)'}"
    )


def _resize_position_tables(
    converter: FamilyConverter, config: PreTrainedConfig, mapped: dict[str, torch.Tensor], model: torch.nn.Module
) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
    """Resize the mapped ``position_tables`` whose shape differs from the model's; returns them with a record."""
    if not converter.position_tables:
        return mapped, ()
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    resized: list[str] = []
    for name, tensor in list(mapped.items()):
        shape = expected.get(name)
        if shape is None or tuple(tensor.shape) == shape:
            continue
        if not any(re.fullmatch(pattern, name) for pattern in converter.position_tables):
            continue
        table = converter.resize_position_embeddings(name, tensor, config, shape)
        if tuple(table.shape) != shape:
            raise ConversionError(
                f"{type(converter).__name__}.resize_position_embeddings gave {printable(name)} the shape "
                f"{list(table.shape)}; the model expects {list(shape)}"
            )
        mapped[name] = table
        resized.append(f"{name}: {list(tensor.shape)} -> {list(shape)}")
    return mapped, tuple(resized)


@contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Run ``model`` with eager attention inside the block, then restore exactly what each config held.

    Parity is checked with the reference kernel: the released code computes attention eagerly, and sdpa's fused
    kernels differ from it by rounding. Every config the model reads (its own, its sub-configs, those of sub-models)
    is switched, as ``model.set_attn_implementation("eager")`` would, without the warnings transformers gives for
    sub-configs that have no sub-model of their own (MS-CLIP's towers).
    """
    configs: dict[int, PreTrainedConfig] = {}
    pending = [model.config, *(m.config for m in model.modules() if isinstance(m, PreTrainedModel))]
    while pending:
        config = pending.pop()
        if isinstance(config, PreTrainedConfig) and id(config) not in configs:
            configs[id(config)] = config
            pending += [getattr(config, key, None) for key in config.sub_configs]
    saved = {key: config._attn_implementation_internal for key, config in configs.items()}
    for config in configs.values():
        config._attn_implementation_internal = "eager"
    try:
        yield model
    finally:
        for key, config in configs.items():
            config._attn_implementation_internal = saved[key]


def _check_variant(converter: FamilyConverter, variant: str | None) -> None:
    if variant is None:
        return
    if variant not in converter.variants:
        valid = ", ".join(converter.variants) or f"none ({converter.family} has no named variants)"
        raise ValueError(f"variant {variant!r} is not a {converter.family} variant; valid variants: {valid}")


def _read_original_config(original_config: dict | str | Path | None) -> dict | None:
    """The original config as a dict, checked to be a small tree of JSON-like values (depth and size bounded)."""
    if original_config is None:
        return None
    if isinstance(original_config, dict):
        _check_config_tree(original_config, "original_config")
        return original_config
    if not isinstance(original_config, (str, Path)):
        raise TypeError(f"original_config must be a dict or a JSON file path, got {type(original_config).__name__}")
    path = Path(original_config)
    if not path.is_file():
        raise FileNotFoundError(f"original_config file {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise ValueError(
            f"original_config file {path} nests JSON arrays/objects too deeply to parse (an original config has "
            f"a few levels)"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"original_config file {path} is not valid JSON ({printable(error)})") from None
    if not isinstance(data, dict):
        raise ValueError(f"original_config file {path} holds a JSON {type(data).__name__}; expected an object")
    _check_config_tree(data, f"original_config file {path}")
    return data


def _with_config(original_config: dict | str | Path | None) -> str:
    return f" with original config {original_config}" if isinstance(original_config, (str, Path)) else ""


def _check_config_tree(config: dict, source: str) -> None:
    walk_object_graph(config, source=source, max_objects=_MAX_CONFIG_VALUES, max_depth=_MAX_CONFIG_DEPTH)


def _check_model_size(
    converter: FamilyConverter, config: PreTrainedConfig, state_dict: dict[str, torch.Tensor], checkpoint: str | Path
) -> None:
    """Refuse a config whose model would need far more elements than the checkpoint stores, before allocating it.

    The model is built on the meta device (shapes only, no memory); the stored elements are counted once per
    storage, so that many views of one buffer do not count as many buffers.
    """
    with torch.device("meta"):
        model = converter.build_model(config)
    needed = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    stored = _stored_elements(state_dict)
    if needed > _MAX_MODEL_GROWTH * stored + _MODEL_SIZE_MARGIN:
        raise ConversionError(
            f"the {converter.family} architecture inferred from {checkpoint} needs {needed:,} parameter and buffer "
            f"elements but the checkpoint stores {stored:,}: its shapes are inconsistent (check --original-config "
            f"and --variant); nothing was allocated"
        )


def _stored_elements(state_dict: dict[str, torch.Tensor]) -> int:
    storages: dict[int, int] = {}
    for tensor in state_dict.values():
        storage = tensor.untyped_storage()
        if storage.nbytes():
            storages[storage.data_ptr()] = max(
                storages.get(storage.data_ptr(), 0), storage.nbytes() // tensor.element_size()
            )
    return sum(storages.values())


def _load_strictly(model: PreTrainedModel, mapped: dict[str, torch.Tensor], report: MappingReport) -> PreTrainedModel:
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"build_model must return a PreTrainedModel, got {type(model).__name__}")
    if not hasattr(model, "all_tied_weights_keys"):
        raise TypeError(f"{type(model).__name__}.__init__ must end with self.post_init()")
    # Tied copies (target -> source) are filled in by loading their source; a checkpoint that stores both must agree.
    tied = {target for target, source in model.all_tied_weights_keys.items() if source in mapped}
    for target, source in model.all_tied_weights_keys.items():
        if target in mapped and source in mapped and not torch.equal(mapped[target], mapped[source]):
            raise ConversionError(
                f"the checkpoint holds different tensors for {report.sources.get(target, target)!r} and "
                f"{report.sources.get(source, source)!r}, which {type(model).__name__} ties together "
                f"({target} = {source}); converting would silently keep only one of them"
            )
    check_against_model(mapped, model.state_dict(), allowed_missing=tied, report=report)
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if set(missing) - tied or unexpected:
        raise ConversionError(f"loading left keys missing {sorted(set(missing) - tied)} / unexpected {unexpected}")
    return model


def _verify(converter: FamilyConverter, model: PreTrainedModel, reference: Path, atol: float) -> ParityReport:
    inputs, expected = load_io_tensors(reference)
    aligned: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for name, tensor in expected.items():
        value = converter.align_expected(name, tensor, inputs)
        if value is None:
            skipped.append(name)
        else:
            aligned[name] = value
    with torch.no_grad(), eager_attention(model):
        actual = converter.parity_outputs(model, inputs)
    report = compare_outputs(aligned, actual, atol=atol)
    report.skipped = skipped
    return report


def _parity_metadata(
    converter: FamilyConverter, checkpoint: Path, reference: Path, variant: str | None, loaded: LoadedCheckpoint
) -> dict[str, Any]:
    # File names only: the report is published with the model and must not leak local paths.
    return {
        "family": converter.family,
        "variant": variant,
        "checkpoint": checkpoint.name,
        "container": loaded.container,
        "reference": reference.name,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }


def _conversion_report(
    converter: FamilyConverter,
    checkpoint: Path,
    variant: str | None,
    loaded: LoadedCheckpoint,
    mapping_report: MappingReport,
    parity_report: ParityReport | None,
    resized: tuple[str, ...] = (),
) -> str:
    lines = [
        f"family: {converter.family}",
        f"variant: {variant or '-'}",
        f"checkpoint: {printable(checkpoint.name)}",
        f"container: {loaded.container}",
        f"read with: {loaded.reader}",
    ]
    if loaded.neutralised:
        lines.append(f"neutralised (never imported or run): {', '.join(map(printable, loaded.neutralised))}")
    if resized:
        lines.append(f"position tables resized (bicubic unless the family says otherwise): {'; '.join(resized)}")
    lines += ["", mapping_report.format(verbose=True), ""]
    lines.append(parity_report.format() if parity_report is not None else "parity: not verified")
    return "\n".join(lines) + "\n"


def add_common_cli_arguments(
    parser: argparse.ArgumentParser, *, variants: Sequence[str] = ()
) -> argparse.ArgumentParser:
    """Add the arguments every family's converter takes; ``variants`` become the choices of ``--variant``."""
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="FILE", help="original checkpoint file")
    parser.add_argument(
        "--variant",
        choices=list(variants) or None,
        default=None,
        help="released variant (preset) to convert" if variants else argparse.SUPPRESS,
    )
    parser.add_argument(
        "--original-config", type=Path, metavar="JSON", help="the original training config dumped as JSON"
    )
    parser.add_argument("--output-dir", required=True, type=Path, metavar="DIR", help="folder to create")
    parser.add_argument("--tokenizer", type=Path, metavar="PATH", help=TOKENIZER_HELP)
    parser.add_argument(
        "--verify-against",
        type=Path,
        metavar="IO_SAFETENSORS",
        help="reference inputs/outputs; the conversion is written only if they are reproduced",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output-dir that vlzoo wrote and that holds nothing else, once the new one is complete",
    )
    parser.add_argument("--atol", type=float, default=1e-4, help="parity tolerance, max absolute difference")
    parser.add_argument(
        "--remote-code",
        action="store_true",
        help="also write the model's code and auto_map, so the folder loads with trust_remote_code=True where vlzoo "
        "is not installed (vlzoo publish adds it by default)",
    )
    return parser


def run_from_args(converter: FamilyConverter, args: argparse.Namespace) -> int:
    """Run a conversion from parsed :func:`add_common_cli_arguments` arguments; returns the exit status."""
    try:
        result = convert_checkpoint(
            converter,
            args.checkpoint,
            args.output_dir,
            original_config=args.original_config,
            variant=args.variant,
            verify_against=args.verify_against,
            overwrite=args.overwrite,
            atol=args.atol,
            remote_code=getattr(args, "remote_code", False),
            tokenizer=getattr(args, "tokenizer", None),
        )
    except (ValueError, TypeError, OSError, StrictDataclassError) as error:
        # Expected failures (ConversionError, hostile or damaged files, bad arguments) are reported as one message
        # without a traceback; messages escape whatever came from the files.
        logger.debug("conversion failed", exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    report = result.mapping_report
    print(f"Converted {printable(args.checkpoint)} ({result.container}) to {printable(result.output_dir)}")
    print(
        f"{result.family}{f' {result.variant}' if result.variant else ''}: {report.mapped} tensors mapped, "
        f"{len(report.dropped)} dropped deliberately"
    )
    if result.neutralised:
        print(f"neutralised (never imported or run): {', '.join(map(printable, result.neutralised))}")
    print(result.parity_report.format() if result.parity_report is not None else "parity: not verified")
    return 0


def run_cli(
    converter: FamilyConverter,
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
    description: str | None = None,
) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and convert; returns 0 on success, 1 with a message on failure.

    The command line of every family: ``conversion/<family>/convert.py`` and ``vlzoo convert <family>`` both call
    it with the family's converter (``vlzoo.get_family(key).build_converter()``).
    """
    parser = argparse.ArgumentParser(
        prog=prog or f"convert {converter.family}",
        description=description or f"Convert an original {converter.family} checkpoint into a save_pretrained folder.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_cli_arguments(parser, variants=converter.variants)
    return run_from_args(converter, parser.parse_args(argv))
