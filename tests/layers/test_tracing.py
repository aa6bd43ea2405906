"""is_tracing: false in eager code, true under torch.compile, torch.export and TorchScript tracing."""

import torch

from vlzoo.layers.tracing import is_tracing


class _Marks(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1 if is_tracing() else x - 1


def test_false_in_eager_code():
    assert not is_tracing()
    torch.testing.assert_close(_Marks()(torch.zeros(2)), torch.full((2,), -1.0))


def test_true_under_compile_export_and_jit_trace():
    x = torch.zeros(2)
    expected = torch.ones(2)
    torch._dynamo.reset()
    torch.testing.assert_close(torch.compile(_Marks(), fullgraph=True, backend="eager")(x), expected)
    torch.testing.assert_close(torch.export.export(_Marks(), (x,)).module()(x), expected)
    torch.testing.assert_close(torch.jit.trace(_Marks(), (x,))(x), expected)
