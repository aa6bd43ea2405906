"""CPU inference fast path: oneDNN linear layers with fused epilogues, one q/k/v matmul, a bf16 attention kernel.

Why: on CPUs where PyTorch's fp32 `F.linear` goes to MKL's sgemm, MKL may take a narrower code path than the CPU
has (AMD EPYC with AVX-512: about half of oneDNN's rate), while oneDNN (PyTorch's `mkldnn` ops, which inductor uses
for the same reason) runs the full width; oneDNN also applies GELU or a residual add while the output is in cache.
PyTorch's flash attention for bf16 on CPUs without AMX runs a slow reference GEMM, slower than two bf16 matmuls.

Everything here computes what the plain modules compute (fp32: equal up to summation order, ~1e-6; bf16 autocast:
the same bf16 casts of weights and inputs as autocast's `F.linear`) and steps aside (the plain module call) whenever
it cannot be sure of that or of the module's contract:
- gradients are needed (the oneDNN ops have no backward), or the graph is traced/compiled (`is_tracing`);
- not on CPU, or a dtype other than fp32 / bf16-autocast, or oneDNN's linear op is missing or failed its self-check;
- the module is not a plain `nn.Linear` (a PEFT adapter, a quantised layer) or carries hooks or a patched `forward`
  (Accelerate's offloading), so whatever wraps it keeps working;
- `VLZOO_DISABLE_FAST_PATH=1` in the environment (checked at import) or `set_fast_path(False)`.

Weight cache: under bf16 autocast, autocast casts every fp32 weight to bf16 on every forward (about 5 % of a
CPU forward of FLAVA-base). The fast path keeps the bf16 copy (and the concatenated q/k/v weight) on the module,
as a plain attribute outside the state dict, and reuses it while each source parameter is the same tensor with the
same storage and version counter (an optimizer step, `load_state_dict` or `.to()` all invalidate it). It costs half
the fp32 size of the linear weights in memory; `set_fast_path(True, cache_weights=False)` or
`VLZOO_FAST_PATH_WEIGHT_CACHE=0` turns it off, `clear_weight_cache(model)` frees it.
"""

import math
import os
import weakref
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from .attention import MultiHeadAttention
from .tracing import is_tracing

_enabled = os.environ.get("VLZOO_DISABLE_FAST_PATH", "0") not in ("1", "true", "True")
_cache_weights = os.environ.get("VLZOO_FAST_PATH_WEIGHT_CACHE", "1") not in ("0", "false", "False")
_CACHE_ATTRIBUTE = "_vlzoo_fast_path_cache"
_onednn_ok: bool | None = None
_packing_ok = False
_PACK = getattr(torch.ops.mkldnn, "_reorder_linear_weight", None) if hasattr(torch.ops, "mkldnn") else None
_PACK_HINT = 64  # rows the packed layout is chosen for; the self-check confirms other row counts give equal results
_amx: bool | None = None
_FUSABLE_ACTIVATIONS = {"gelu": ("gelu", "none"), "relu": ("relu", "")}


def set_fast_path(enabled: bool, *, cache_weights: bool | None = None) -> None:
    """Switch the fast path (and, when given, its bf16 weight cache) on or off for the whole process (both are on
    by default)."""
    global _enabled, _cache_weights
    _enabled = bool(enabled)
    if cache_weights is not None:
        _cache_weights = bool(cache_weights)


def clear_weight_cache(model: nn.Module) -> None:
    """Drop the cached low-precision weights of every module of `model`."""
    for module in model.modules():
        module.__dict__.pop(_CACHE_ATTRIBUTE, None)


def _cached(
    owner: nn.Module,
    key: tuple,
    sources: tuple[torch.Tensor | None, ...],
    build: Callable[[], tuple[torch.Tensor | None, ...]],
) -> tuple[torch.Tensor | None, ...]:
    """`build()`, reused while every source is the same tensor object with the same storage and version."""
    if not _cache_weights:
        return build()
    stamp = tuple(None if t is None else (t._version, t.data_ptr(), t.dtype, t.shape) for t in sources)
    store = owner.__dict__.setdefault(_CACHE_ATTRIBUTE, {})
    entry = store.get(key)
    if entry is not None:
        refs, old_stamp, value = entry
        if old_stamp == stamp and all(
            (r is None and t is None) or (r is not None and r() is t) for r, t in zip(refs, sources, strict=True)
        ):
            return value
    value = build()
    store[key] = (tuple(None if t is None else weakref.ref(t) for t in sources), stamp, value)
    return value


def fast_path_enabled() -> bool:
    return _enabled


def _onednn_linear_ok() -> bool:
    """Whether oneDNN's linear op exists and agrees with `F.linear` (checked once, on a small and a FLAVA-sized
    problem), and whether bf16 weights it prepacked (`_reorder_linear_weight`) give the same results at other row
    counts than the packing hint (then the bf16 weight cache holds them prepacked)."""
    global _onednn_ok, _packing_ok
    if _onednn_ok is None:
        _onednn_ok = _packing_ok = False
        try:
            if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
                mkldnn = torch.ops.mkldnn
                generator = torch.Generator().manual_seed(0)
                ok = packing = True
                for rows, width, out in ((15, 16, 24), (394, 768, 2304)):
                    x = torch.randn(rows, width, generator=generator)
                    w = torch.randn(out, width, generator=generator) * width**-0.5
                    b = torch.randn(out, generator=generator)
                    with torch.no_grad(), torch.autocast("cpu", enabled=False):  # fp32, whatever the caller's context
                        plain = F.linear(x, w, b)
                        got = mkldnn._linear_pointwise(x, w, b, "gelu", [], "none")
                        added = mkldnn._linear_pointwise.binary(x, plain, w, b, "add")
                        ok = ok and torch.allclose(got, F.gelu(plain), atol=1e-5)
                        ok = ok and torch.allclose(added, plain + plain, atol=1e-5)
                        x16, w16, b16 = x.bfloat16(), w.bfloat16(), b.bfloat16()
                        reference = mkldnn._linear_pointwise(x16, w16, b16, "none", [], "").float()
                        packed = _PACK(w16, _PACK_HINT) if _PACK is not None else None
                        packing = packing and packed is not None
                        if packing:
                            again = mkldnn._linear_pointwise(x16, packed, b16, "none", [], "").float()
                            packing = torch.allclose(again, reference, atol=1e-2, rtol=1e-2)
                _onednn_ok = bool(ok)
                _packing_ok = bool(ok and packing)
        except Exception:  # an op that fails here fails later too: use the plain modules
            _onednn_ok = _packing_ok = False
    return _onednn_ok


def _has_amx() -> bool:
    global _amx
    if _amx is None:
        check = getattr(torch._C._cpu, "_is_amx_tile_supported", None)
        _amx = bool(check()) if check is not None else False
    return _amx


def _compute_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype the linear layers compute in on this call (None: no fast path for it)."""
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
    return torch.float32 if x.dtype == torch.float32 else None


def unwrapped(module: nn.Module, cls: type) -> bool:
    """Whether `module` is exactly a `cls` with no hooks and no patched `forward`: its forward may be inlined."""
    return (
        type(module) is cls
        and not module._forward_hooks
        and not module._forward_pre_hooks
        and "forward" not in module.__dict__
    )


def _plain_linear(module: nn.Module) -> bool:
    return unwrapped(module, nn.Linear) and module.weight.device.type == "cpu"


def fast_path_applies(x: torch.Tensor, *modules: nn.Module) -> torch.dtype | None:
    """The compute dtype when the fast path may run `modules` (plain `nn.Linear`s) on `x`, else None."""
    if not _enabled or x.device.type != "cpu" or is_tracing():
        return None
    if torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for m in modules for p in m.parameters(recurse=False))
    ):
        return None
    if torch.overrides.has_torch_function((x,)) or not all(_plain_linear(m) for m in modules):
        return None
    dtype = _compute_dtype(x)
    if dtype is None or any(m.weight.dtype != torch.float32 for m in modules) or not _onednn_linear_ok():
        return None
    return dtype


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(dtype)


def _pack(weight: torch.Tensor) -> torch.Tensor:
    """A cached bf16 weight in oneDNN's blocked layout (about 6 % faster matmuls), when the self-check allowed it."""
    return _PACK(weight, _PACK_HINT) if _packing_ok else weight


def fast_linear(
    module: nn.Module,
    x: torch.Tensor,
    activation: str | None = None,
    residual: torch.Tensor | None = None,
    activation_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """`activation(module(x))` plus `residual` (when given), through oneDNN where the fast path applies.

    `activation` names the activation ("gelu" = exact erf GELU, "relu", or None); `activation_fn` is the callable the
    plain path applies (default: transformers' `ACT2FN[activation]`). Under bf16 autocast the residual add happens
    after the linear's bf16 output, in the residual's dtype, exactly as in the plain modules.
    """
    dtype = fast_path_applies(x, module)
    fusable = activation is None or activation in _FUSABLE_ACTIVATIONS
    if dtype is None or not fusable:
        output = module(x)
        if activation is not None:
            if activation_fn is None:
                from transformers.activations import ACT2FN

                activation_fn = ACT2FN[activation]
            output = activation_fn(output)
        return output if residual is None else residual + output
    x_in = x.to(dtype) if x.dtype != dtype else x
    if not x_in.is_contiguous():
        x_in = x_in.contiguous()
    if dtype == module.weight.dtype:
        weight, bias = module.weight, module.bias
    else:
        weight, bias = _cached(
            module,
            ("linear", dtype),
            (module.weight, module.bias),
            lambda: (module.weight.to(dtype), _cast(module.bias, dtype)),
        )
    mkldnn = torch.ops.mkldnn
    if (
        activation is None
        and residual is not None
        and residual.dtype == dtype
        and residual.shape == (*x.shape[:-1], weight.shape[0])
        and residual.is_contiguous()
    ):
        return mkldnn._linear_pointwise.binary(x_in, residual, weight, bias, "add")
    attr, algorithm = _FUSABLE_ACTIVATIONS[activation] if activation is not None else ("none", "")
    output = mkldnn._linear_pointwise(x_in, weight, bias, attr, [], algorithm)
    return output if residual is None else residual + output


class FusedQKVAttention(MultiHeadAttention):
    """`MultiHeadAttention` whose plain self-attention projects q, k and v with one matmul on the CPU fast path.

    The parameters stay those of `MultiHeadAttention` (`q_proj`, `k_proj`, `v_proj`, `out_proj`: same state-dict keys,
    PEFT targets and checkpoints); the three weights are concatenated per call (a copy of `3 * hidden^2` values,
    small next to the matmul). The output of the fused projection is viewed as q, k and v without copies; the
    kernel is the configured one, except that sdpa in bf16 on a CPU without AMX runs two bf16 matmuls around the
    softmax (PyTorch's CPU flash kernel is about twice as slow there; the scores are rounded to bf16 as in eager
    attention under autocast). Anything else (cross-attention, positions, multiway, sub-LN, scaled queries, gradients,
    adapters, a non-CPU device, `output_attentions` with eager) takes `MultiHeadAttention.forward`.
    """

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        *,
        value_states: torch.Tensor | None = None,
        query_position: torch.Tensor | None = None,
        key_position: torch.Tensor | None = None,
        split_position: int | None = None,
        residual: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """As `MultiHeadAttention.forward`; `residual`, when given, is added to the output (fused on the fast path)."""
        plain = (
            key_value_states is None
            and value_states is None
            and query_position is None
            and key_position is None
            and split_position is None
            and not self.multiway
            and self.inner_attn_ln is None
            and not self.scale_queries
            and not self.is_causal
            and not (self.training and self.dropout > 0)
            and not kwargs.get("output_attentions", False)
            and hidden_states.dim() == 3
            and hidden_states.shape[-1] == self.hidden_size
        )
        projections = (self.q_proj, self.k_proj, self.v_proj)
        dtype = fast_path_applies(hidden_states, *projections, self.out_proj) if plain else None
        if dtype is None or any((p.bias is None) != (self.q_proj.bias is None) for p in projections):
            output, weights = super().forward(
                hidden_states,
                attention_mask,
                key_value_states,
                value_states=value_states,
                query_position=query_position,
                key_position=key_position,
                split_position=split_position,
                **kwargs,
            )
            return (output if residual is None else residual + output), weights
        batch, length, _ = hidden_states.shape
        implementation = self.config._attn_implementation if self.config is not None else self.attn_implementation
        two_matmuls = (implementation or "eager") == "sdpa" and dtype == torch.bfloat16 and not _has_amx()
        # In the two-matmul kernel the scale goes into the cached query weights when that is exact (a power of two,
        # e.g. 1/8 for head_dim 64: scaling commutes with rounding to bf16), sparing a pass over the queries.
        folded = two_matmuls and math.frexp(self.scaling)[0] == 0.5
        weight, bias = self._fused_weights(projections, dtype, query_scale=self.scaling if folded else None)
        x = hidden_states.to(dtype) if hidden_states.dtype != dtype else hidden_states
        fused = torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")
        query, key, value = fused.view(batch, length, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = self._additive_mask(attention_mask, query, key)
        if mask is not None and not bool(mask.any()):
            mask = None  # every key kept (unpadded texts): adding zeros to every score is a wasted pass
        if two_matmuls:
            # keys made contiguous first: the matmul then reads their transpose without a transposing copy
            scores = torch.matmul(query if folded else query * self.scaling, key.contiguous().transpose(-1, -2))
            if mask is not None:
                scores = scores + mask
            output = torch.matmul(torch.softmax(scores, dim=-1), value)
        elif (implementation or "eager") == "sdpa":
            output = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, scale=self.scaling)
        else:
            return self._with_kernel(query, key, value, mask, implementation, batch, length, residual, kwargs)
        output = output.transpose(1, 2).reshape(batch, length, self.hidden_size)
        return fast_linear(self.out_proj, output, residual=residual), None

    def _fused_weights(
        self, projections: tuple[nn.Linear, ...], dtype: torch.dtype, query_scale: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The q/k/v weights (and biases) concatenated in `dtype`, the query rows times `query_scale` when given;
        cached when `dtype` is a cast (bf16)."""

        def scaled(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
            return tensors if query_scale is None else [tensors[0] * query_scale, *tensors[1:]]

        def build() -> tuple[torch.Tensor, torch.Tensor | None]:
            weight = torch.cat(scaled([p.weight.to(dtype) for p in projections]))
            has_bias = projections[0].bias is not None
            bias = torch.cat(scaled([p.bias.to(dtype) for p in projections])) if has_bias else None
            return weight, bias

        if dtype == projections[0].weight.dtype:
            return build()  # fp32: a per-call copy, small next to the fp32 matmul, and no second copy in memory
        sources = tuple(t for p in projections for t in (p.weight, p.bias))
        if not _cache_weights:
            return build()

        def build_packed() -> tuple[torch.Tensor, torch.Tensor | None]:
            weight, bias = build()
            return _pack(weight), bias

        return _cached(self, ("qkv", dtype, query_scale), sources, build_packed)

    def _with_kernel(self, query, key, value, mask, implementation, batch, length, residual, kwargs):
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        from .attention import eager_attention_forward

        attention = ALL_ATTENTION_FUNCTIONS.get_interface(implementation or "eager", eager_attention_forward)
        output, weights = attention(
            self, query, key, value, mask, scaling=self.scaling, dropout=0.0, is_causal=False, **kwargs
        )
        output = output.reshape(batch, length, self.hidden_size)
        return fast_linear(self.out_proj, output, residual=residual), weights


__all__ = [
    "FusedQKVAttention",
    "clear_weight_cache",
    "fast_path_applies",
    "fast_path_enabled",
    "fast_linear",
    "set_fast_path",
    "unwrapped",
]
