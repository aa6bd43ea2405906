"""Compare a converted model's outputs with the reference outputs stored in an io.safetensors file."""

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch

from .escaping import printable, printable_repr

__all__ = ["OutputComparison", "ParityReport", "compare_outputs", "load_io_tensors"]


@dataclass
class OutputComparison:
    """One output: its shape, the largest absolute difference and whether it passed (with the reason if not)."""

    name: str
    shape: tuple[int, ...] | None
    max_abs_diff: float | None
    passed: bool
    message: str = ""


@dataclass
class ParityReport:
    """Per-output comparison against reference tensors at one absolute tolerance."""

    outputs: list[OutputComparison]
    atol: float
    skipped: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when there was something to compare and every output passed."""
        return bool(self.outputs) and all(output.passed for output in self.outputs)

    @property
    def failures(self) -> list[OutputComparison]:
        return [output for output in self.outputs if not output.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "atol": self.atol,
            "outputs": {
                output.name: {
                    "shape": list(output.shape) if output.shape is not None else None,
                    "max_abs_diff": output.max_abs_diff,
                    "passed": output.passed,
                    **({"message": output.message} if output.message else {}),
                }
                for output in self.outputs
            },
            "skipped": list(self.skipped),
            "metadata": self.metadata,
        }

    def to_json(self, path: str | Path) -> None:
        """Write the report (usually as ``parity.json``); non-finite differences are written as null."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False, default=str) + "\n")

    def format(self) -> str:
        """A plain-text table: name, shape, max |diff|, ok/FAIL (and the reason of each failure).

        Output names come from the reference file: they are escaped, so that a name holding a newline or an escape
        sequence cannot forge a line such as the verdict.
        """
        header = ("output", "shape", "max |diff|", "result")
        rows = [
            (
                printable(output.name),
                "x".join(map(str, output.shape)) if output.shape is not None else "-",
                f"{output.max_abs_diff:.3e}" if output.max_abs_diff is not None else "-",
                "ok" if output.passed else f"FAIL: {printable(output.message)}",
            )
            for output in self.outputs
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(3)]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3]
            for row in rows
        ]
        title = "  ".join(cell.ljust(width) for cell, width in zip(header[:3], widths, strict=True)) + "  " + header[3]
        verdict = "PASSED" if self.passed else "FAILED"
        summary = (
            f"parity {verdict} at atol={self.atol:g} ({len(self.outputs) - len(self.failures)}/{len(self.outputs)} ok)"
        )
        if self.skipped:
            summary += f"; not compared: {', '.join(map(printable, self.skipped))}"
        return "\n".join([title, *lines, summary])


def compare_outputs(
    expected: Mapping[str, torch.Tensor], actual: Mapping[str, torch.Tensor], *, atol: float = 1e-4
) -> ParityReport:
    """Compare every ``expected`` output with the same-named ``actual`` one (max absolute difference <= ``atol``).

    A name missing from ``actual``, a shape mismatch or a NaN where the reference has none is a failure. Integer
    outputs are compared through the same difference, so any change fails at ``atol < 1``. Names only in ``actual``
    are ignored.
    """
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a non-negative number, got {atol!r}")
    comparisons = []
    for name, reference in expected.items():
        if name not in actual:
            comparisons.append(
                OutputComparison(name, tuple(reference.shape), None, False, "missing from the model outputs")
            )
            continue
        comparisons.append(_compare(name, reference, actual[name], float(atol)))
    return ParityReport(comparisons, float(atol))


def _compare(name: str, reference: torch.Tensor, value: Any, atol: float) -> OutputComparison:
    if not isinstance(value, torch.Tensor):
        return OutputComparison(name, tuple(reference.shape), None, False, f"the model gave {type(value).__name__}")
    if tuple(value.shape) != tuple(reference.shape):
        return OutputComparison(
            name, tuple(reference.shape), None, False, f"shape {list(value.shape)}, expected {list(reference.shape)}"
        )
    if reference.numel() == 0:
        return OutputComparison(name, tuple(reference.shape), 0.0, True)
    ref64 = reference.detach().to("cpu", torch.float64)
    got64 = value.detach().to("cpu", torch.float64)
    both_nan = torch.isnan(ref64) & torch.isnan(got64)
    diff = torch.where(both_nan, torch.zeros_like(ref64), (got64 - ref64).abs())
    # inf - inf is nan: equal infinities count as equal, everything else non-finite as a failure.
    diff = torch.where(ref64 == got64, torch.zeros_like(diff), diff)
    max_diff = float(diff.max()) if not torch.isnan(diff).any() else math.inf
    if not math.isfinite(max_diff):
        return OutputComparison(name, tuple(reference.shape), None, False, "non-finite difference (NaN or inf)")
    passed = max_diff <= atol
    message = "" if passed else f"max |diff| {max_diff:.3e} > atol {atol:g}"
    return OutputComparison(name, tuple(reference.shape), max_diff, passed, message)


def load_io_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Read an io.safetensors fixture: returns (inputs, outputs) with the ``input.``/``output.`` prefixes removed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unreadable, or a key outside the ``input.*``/``output.*`` scheme, or no outputs at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference file {path} does not exist (expected an io.safetensors file)")
    try:
        tensors = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"reference file {path} is truncated or corrupt ({printable(error)})") from None
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        kind, _, name = key.partition(".")
        if kind not in ("input", "output") or not name:
            raise ValueError(
                f"reference file {path} has key {printable_repr(key)}; expected only 'input.<name>' and "
                f"'output.<name>'"
            )
        (inputs if kind == "input" else outputs)[name] = tensor
    if not outputs:
        raise ValueError(f"reference file {path} has no 'output.*' tensors to compare with")
    return inputs, outputs
