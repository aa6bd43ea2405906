"""Rename checkpoint keys through an ordered regex table, and check the result strictly against a model."""

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from .errors import ConversionError
from .escaping import printable, printable_repr

__all__ = [
    "KeyMap",
    "MappingReport",
    "Transform",
    "apply_key_map",
    "check_against_model",
    "group_keys",
    "split_fused_qkv",
    "split_qkv",
    "split_transform",
    "transpose",
]

KeyMap = list[tuple[str, str | None]]
"""Ordered ``(pattern, replacement)`` pairs; a key takes the first pattern that ``re.fullmatch``-es it.
The replacement may use back-references (``\\1``); ``None`` drops the key deliberately."""

Transform = Callable[[str, torch.Tensor], "torch.Tensor | dict[str, torch.Tensor]"]
"""``(target_name, tensor) -> tensor`` or ``{new_target_name: tensor}`` (a split into several targets)."""


@dataclass
class MappingReport:
    """What a conversion did with every key, in a form a person can check.

    Attributes:
        mapped: number of tensors written under a model name.
        dropped: source keys removed on purpose (replacement ``None``).
        unmatched: source keys no pattern matched (leftovers; a conversion refuses them).
        missing: model keys the converted state dict lacks.
        unexpected: converted keys the model does not have.
        shape_mismatches: ``(name, checkpoint shape, model shape)`` triples.
        sources: converted name -> source key it came from.
    """

    mapped: int = 0
    dropped: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was left over, missing, unexpected or misshaped."""
        return not (self.unmatched or self.missing or self.unexpected or self.shape_mismatches)

    def format(self, *, verbose: bool = False) -> str:
        """Multi-line report; key lists are grouped by common prefix with layer numbers collapsed.

        With ``verbose`` the full ``source -> converted`` table follows. Keys come from the checkpoint file, so each
        is escaped (:func:`~vlzoo.conversion.escaping.printable`): a newline or an escape sequence in a key cannot
        forge a line of the report.
        """
        lines = [
            f"Key mapping: {self.mapped} tensors mapped, {len(self.dropped)} dropped deliberately, "
            f"{len(self.unmatched)} left over"
        ]
        sections = (
            ("Left over (no key-map pattern matched)", self.unmatched),
            ("Missing from the converted checkpoint (the model expects them)", self.missing),
            ("Unexpected (the model has no such key)", self.unexpected),
            ("Dropped deliberately", self.dropped),
        )
        for title, keys in sections:
            if keys:
                lines.append(f"{title} ({len(keys)}):")
                lines.extend(f"  {group}" for group in group_keys(printable(key) for key in keys))
        if self.shape_mismatches:
            lines.append(f"Shape mismatches ({len(self.shape_mismatches)}):")
            lines.extend(
                f"  {printable(name)}: checkpoint {list(got)} vs model {list(expected)}"
                for name, got, expected in self.shape_mismatches
            )
        if verbose and self.sources:
            lines.append(f"Source key -> converted key ({len(self.sources)}):")
            lines.extend(
                f"  {printable(source)} -> {printable(target)}" for target, source in sorted(self.sources.items())
            )
        return "\n".join(lines)


def group_keys(keys: Iterable[str]) -> list[str]:
    """Collapse numbered keys and sibling leaves into readable lines.

    ``layers.0.fc.weight`` ... ``layers.5.fc.weight`` becomes ``layers.{0-5}.fc.weight  (6 keys)``, and leaves that
    share such a prefix are listed together: ``layers.{0-5}.fc.{bias,weight}  (12 keys)``.
    """
    groups: dict[tuple[str, ...], list[list[int]]] = {}
    for key in keys:
        parts = key.split(".")
        template = tuple("{}" if part.isdigit() else part.replace("{", "{{").replace("}", "}}") for part in parts)
        numbers = [int(part) for part in parts if part.isdigit()]
        groups.setdefault(template, []).append(numbers)
    by_prefix: dict[str, list[tuple[str, int]]] = {}
    for template, members in sorted(groups.items()):
        columns = [sorted({numbers[i] for numbers in members}) for i in range(template.count("{}"))]
        rendered = ".".join(template).format(*(_ranges(column) for column in columns))
        if template[-1] == "{}" or len(template) == 1:
            by_prefix.setdefault(rendered, []).append(("", len(members)))
        else:
            prefix, _, leaf = rendered.rpartition(".")
            by_prefix.setdefault(prefix, []).append((leaf, len(members)))
    lines = []
    for prefix, leaves in by_prefix.items():
        count = sum(n for _, n in leaves)
        names = [leaf for leaf, _ in leaves]
        if names == [""]:
            line = prefix
        elif len(names) == 1:
            line = f"{prefix}.{names[0]}"
        else:
            line = f"{prefix}.{{{','.join(names)}}}"
        lines.append(line + (f"  ({count} keys)" if count > 1 else ""))
    return lines


def _ranges(values: list[int]) -> str:
    spans: list[str] = []
    start = previous = values[0]
    for value in [*values[1:], None]:
        if value is not None and value == previous + 1:
            previous = value
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if value is not None:
            start = previous = value
    return spans[0] if len(values) == 1 else "{" + ",".join(spans) + "}"


def _compile(key_map: KeyMap) -> list[tuple[re.Pattern, str | None]]:
    if not isinstance(key_map, (list, tuple)):
        raise TypeError(f"key_map must be a list of (pattern, replacement) pairs, got {type(key_map).__name__}")
    compiled = []
    for index, entry in enumerate(key_map):
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)) or not isinstance(
            entry[1], (str, type(None))
        ):
            raise TypeError(f"key_map entry {index} must be (pattern: str, replacement: str | None), got {entry!r}")
        try:
            compiled.append((re.compile(entry[0]), entry[1]))
        except re.error as error:
            raise ValueError(f"key_map entry {index} pattern {entry[0]!r} is not a valid regex: {error}") from None
    return compiled


def apply_key_map(
    state_dict: Mapping[str, torch.Tensor],
    key_map: KeyMap,
    *,
    transforms: Mapping[str, Transform] | None = None,
) -> tuple[dict[str, torch.Tensor], MappingReport]:
    """Rename every key of ``state_dict`` with the first ``key_map`` pattern that fully matches it.

    Args:
        state_dict: source name -> tensor.
        key_map: ordered ``(pattern, replacement)`` pairs (see :data:`KeyMap`).
        transforms: target-name pattern -> :data:`Transform`, applied (first full match) after renaming, e.g. a
            transpose or a fused-qkv split (:func:`split_transform`).

    Returns:
        The converted state dict and a :class:`MappingReport` (``unmatched`` lists the leftovers; deciding that
        they are an error is the caller's job).

    Raises:
        ConversionError: two source keys would get the same converted name (both are named).
    """
    rules = _compile(key_map)
    transform_rules = [(re.compile(pattern), fn) for pattern, fn in (transforms or {}).items()]
    converted: dict[str, torch.Tensor] = {}
    report = MappingReport()
    for source, tensor in state_dict.items():
        match, replacement = next(((m, r) for p, r in rules if (m := p.fullmatch(source))), (None, None))
        if match is None:
            report.unmatched.append(source)
            continue
        if replacement is None:
            report.dropped.append(source)
            continue
        try:
            target = match.expand(replacement)
        except (re.error, IndexError) as error:
            raise ConversionError(
                f"key map replacement {replacement!r} cannot be applied to {printable_repr(source)}: {error}"
            ) from None
        for name, value in _transform(target, tensor, transform_rules).items():
            if name in report.sources:
                raise ConversionError(
                    f"key map sends both {printable_repr(report.sources[name])} and {printable_repr(source)} to "
                    f"{printable_repr(name)}; each converted key must come from exactly one source key"
                )
            converted[name] = value
            report.sources[name] = source
    report.mapped = len(converted)
    return converted, report


def _transform(
    target: str, tensor: torch.Tensor, rules: list[tuple[re.Pattern, Transform]]
) -> dict[str, torch.Tensor]:
    fn = next((fn for pattern, fn in rules if pattern.fullmatch(target)), None)
    if fn is None:
        return {target: tensor}
    result = fn(target, tensor)
    if isinstance(result, torch.Tensor):
        return {target: result}
    if isinstance(result, Mapping) and all(isinstance(v, torch.Tensor) for v in result.values()):
        return dict(result)
    raise TypeError(
        f"the transform for {printable_repr(target)} returned {type(result).__name__}; expected a tensor or a dict "
        f"of tensors"
    )


def check_against_model(
    mapped_state_dict: Mapping[str, torch.Tensor],
    model_shapes: Mapping[str, "torch.Size | tuple[int, ...] | torch.Tensor"],
    *,
    allowed_missing: Iterable[str] = (),
    report: MappingReport | None = None,
) -> MappingReport:
    """Strictly compare converted tensors with a model's ``state_dict`` names and shapes.

    Args:
        mapped_state_dict: the converted state dict.
        model_shapes: model key -> shape (or the model's ``state_dict()`` itself).
        allowed_missing: model keys that may be absent (e.g. tied copies that loading fills in).
        report: a report to complete (e.g. the one from :func:`apply_key_map`); a new one otherwise.

    Returns:
        The report, when every key is present with the right shape.

    Raises:
        ConversionError: listing every missing, unexpected and misshaped key at once.
    """
    report = report if report is not None else MappingReport(mapped=len(mapped_state_dict))
    shapes = {name: tuple(getattr(value, "shape", value)) for name, value in model_shapes.items()}
    allowed = set(allowed_missing)
    report.missing = [name for name in shapes if name not in mapped_state_dict and name not in allowed]
    report.unexpected = [name for name in mapped_state_dict if name not in shapes]
    report.shape_mismatches = [
        (name, tuple(tensor.shape), shapes[name])
        for name, tensor in mapped_state_dict.items()
        if name in shapes and tuple(tensor.shape) != shapes[name]
    ]
    if report.missing or report.unexpected or report.shape_mismatches:
        raise ConversionError(
            "the converted checkpoint does not match the model built from the inferred config "
            f"({len(report.missing)} missing, {len(report.unexpected)} unexpected, "
            f"{len(report.shape_mismatches)} with another shape):\n{report.format()}"
        )
    return report


def split_fused_qkv(weight_or_bias: torch.Tensor, num_parts: int = 3) -> tuple[torch.Tensor, ...]:
    """Split a fused projection (``nn.MultiheadAttention.in_proj_weight`` [3W, W] or its bias [3W]) along dim 0.

    Returns ``num_parts`` independent tensors in stored order (q, k, v for the usual layout).
    """
    if not isinstance(weight_or_bias, torch.Tensor) or weight_or_bias.dim() == 0:
        raise ValueError(
            f"weight_or_bias must be a tensor with at least one dimension, got {printable_repr(weight_or_bias)}"
        )
    if not isinstance(num_parts, int) or num_parts < 1 or weight_or_bias.shape[0] % num_parts:
        raise ValueError(
            f"cannot split a tensor of shape {list(weight_or_bias.shape)} into num_parts={num_parts!r} equal parts "
            f"along dim 0"
        )
    return tuple(part.clone() for part in weight_or_bias.chunk(num_parts, dim=0))


def split_transform(fused: str, parts: Sequence[str]) -> Transform:
    """A :data:`Transform` that splits a fused tensor into ``parts``, renaming the ``fused`` name component.

    Example: ``split_transform("in_proj", ("q_proj", "k_proj", "v_proj"))`` turns
    ``layers.0.self_attn.in_proj.weight`` [3W, W] into ``layers.0.self_attn.q_proj.weight`` [W, W] and so on.
    """
    if not parts or not all(isinstance(part, str) and part for part in parts):
        raise ValueError(f"parts must be a non-empty sequence of names, got {parts!r}")

    def split(target: str, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        components = target.split(".")
        if fused not in components:
            raise ConversionError(f"cannot split {printable_repr(target)}: it has no {fused!r} name component")
        index = len(components) - 1 - components[::-1].index(fused)
        names = [".".join([*components[:index], part, *components[index + 1 :]]) for part in parts]
        return dict(zip(names, split_fused_qkv(tensor, len(parts)), strict=True))

    return split


def split_qkv(fused: str = "in_proj") -> Transform:
    """The usual split of a fused attention projection into ``q_proj``, ``k_proj`` and ``v_proj`` (in that order):
    ``nn.MultiheadAttention.in_proj_*`` (CLIP, MS-CLIP, METER's CLIP tower, TransVG's DETR encoder)."""
    return split_transform(fused, ("q_proj", "k_proj", "v_proj"))


def transpose(target: str, tensor: torch.Tensor) -> torch.Tensor:
    """A :data:`Transform` for projections stored as ``[in, out]`` matrices (``x @ proj``), as ``nn.Linear`` weights
    ``[out, in]``."""
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 2:
        shape = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise ConversionError(f"cannot transpose {printable_repr(target)}: expected a 2-D matrix, got {shape}")
    return tensor.t().contiguous()
