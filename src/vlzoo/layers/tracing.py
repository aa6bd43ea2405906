"""Whether a forward pass is being traced (torch.compile, torch.export, ONNX export, TorchScript tracing)."""

import torch


def is_tracing() -> bool:
    """True while torch.compile, torch.export (also inside the dynamo ONNX exporter), TorchScript or the legacy ONNX
    exporter trace the code.

    Input checks that read tensor values (`int(ids.max())`) cannot be traced: they break graph capture or freeze the
    example's values into the graph. Models run such checks eagerly only and keep shape checks, which trace.
    """
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


__all__ = ["is_tracing"]
