"""Every model forward is traceable: torch.export, ONNX (dynamo and legacy exporters) and torch.compile(fullgraph).

Towers (the single-modality classes of every family) are exported with a dynamic batch (and a dynamic sequence
for token inputs) and run at other sizes than the example; the full model is compiled without graph breaks.
"""

import importlib.util
from collections.abc import Sequence

import pytest
import torch
from torch import nn

from .harness import Case, base_cases, cases

TOWERS = [c for c in cases() if len(c.model_class.input_modalities) == 1]
BASE = base_cases()


def _main_config_first(case: Case) -> object:
    """A test parameter, marked slow unless the case uses its family's first (main) configuration."""
    is_main = case.config_name == next(iter(case.tester.configs))
    return pytest.param(case, id=case.id, marks=() if is_main else pytest.mark.slow)


# the dynamo ONNX exporter takes several seconds per graph: other configurations run with `pytest -m slow`
ONNX_DYNAMO_TOWERS = [_main_config_first(c) for c in TOWERS]
needs_onnxruntime = pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None,
    reason="onnxruntime is not installed (pip install -e '.[test]' installs it with onnx and onnxscript)",
)


class MainOutput(nn.Module):
    """Positional tensors in, the tester's main output tensor out (what an exported graph returns)."""

    def __init__(self, case: Case, model: nn.Module, names: Sequence[str]):
        super().__init__()
        self.case = case
        self.model = model
        self.names = tuple(names)

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.case.main_output(self.model(**dict(zip(self.names, tensors, strict=True))))


def _tower(case: Case) -> tuple[MainOutput, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The wrapped tower in eval mode, example inputs (batch 2) and inputs of other sizes (batch 3)."""
    torch.manual_seed(0)
    model = case.model_class(case.config()).eval()
    example, other = case.inputs(model.config, batch=2), case.inputs(model.config, batch=3)
    for name, tensor in example.items():
        if not tensor.is_floating_point() and tensor.dim() == 2:  # token inputs: also another length
            other[name] = other[name][:, : tensor.shape[1] - 2]
    return MainOutput(case, model, list(example)).eval(), example, other


def _dynamic_shapes(example: dict[str, torch.Tensor]) -> tuple[tuple[dict[int, object], ...]]:
    """A dynamic batch for every input and a dynamic length for token inputs (nested: `forward(*tensors)`)."""
    shapes = []
    for tensor in example.values():
        # DYNAMIC: the export fails if the model's code fixes the size (a value frozen from the example)
        dims = {0: torch.export.Dim.DYNAMIC}
        if not tensor.is_floating_point() and tensor.dim() == 2:
            dims[1] = torch.export.Dim.DYNAMIC
        shapes.append(dims)
    return (tuple(shapes),)


def _run_onnx(path, names: Sequence[str], inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    assert len(graph_inputs) == len(names), f"the graph takes {graph_inputs}, the model {list(names)}"
    feed = {graph_name: inputs[name].numpy() for graph_name, name in zip(graph_inputs, names, strict=True)}
    return torch.from_numpy(session.run(None, feed)[0])


@pytest.mark.parametrize("case", TOWERS, ids=[c.id for c in TOWERS])
def test_torch_export_of_towers(case: Case):
    wrapper, example, other = _tower(case)
    program = torch.export.export(wrapper, tuple(example.values()), dynamic_shapes=_dynamic_shapes(example))
    with torch.no_grad():
        for inputs in (example, other):
            torch.testing.assert_close(program.module()(*inputs.values()), wrapper(*inputs.values()))


@needs_onnxruntime
@pytest.mark.parametrize(
    ("case", "dynamo"),
    [pytest.param(*p.values, True, id=f"{p.id}-dynamo", marks=p.marks) for p in ONNX_DYNAMO_TOWERS]
    + [pytest.param(c, False, id=f"{c.id}-legacy") for c in TOWERS],
)
def test_onnx_export_of_towers_runs_in_onnxruntime(case: Case, dynamo: bool, tmp_path):
    wrapper, example, other = _tower(case)
    path = tmp_path / "tower.onnx"
    names = list(example)
    if dynamo:
        torch.onnx.export(
            wrapper,
            tuple(example.values()),
            path,
            input_names=names,
            output_names=["output"],
            dynamic_shapes=_dynamic_shapes(example),
            dynamo=True,
            verbose=False,
        )
    else:
        axes = {
            name: {0: "batch", **({1: "sequence"} if shape.get(1) else {})}
            for name, shape in zip(names, _dynamic_shapes(example)[0], strict=True)
        }
        torch.onnx.export(
            wrapper,
            tuple(example.values()),
            path,
            input_names=names,
            output_names=["output"],
            dynamic_axes={**axes, "output": {0: "batch"}},
            dynamo=False,
        )
    with torch.no_grad():
        for inputs in (example, other):
            torch.testing.assert_close(_run_onnx(path, names, inputs), wrapper(*inputs.values()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", BASE, ids=[c.id for c in BASE])
def test_compile_fullgraph_of_the_full_model(case: Case):
    torch.manual_seed(0)
    model = case.model_class(case.config()).eval()
    inputs = case.inputs(model.config)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        expected = case.main_output(model(**inputs))
        actual = case.main_output(compiled(**inputs))
    torch.testing.assert_close(actual, expected)
