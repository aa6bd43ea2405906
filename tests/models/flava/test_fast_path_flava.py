"""FLAVA's inference speed path: the towers run the model's attention kernel, and the CPU fast path (oneDNN linear
layers with fused epilogues, one q/k/v matmul) gives the plain modules' results and steps aside when it must."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from tests.models.flava.tester import image_inputs, text_inputs, tiny_config
from vlzoo.layers import fast_path
from vlzoo.models.flava import FlavaForSequenceClassification, FlavaModel

ONEDNN = "mkldnn::_linear_pointwise"


class OpRecorder(TorchDispatchMode):
    """The names of the operators a block of code dispatches."""

    def __init__(self):
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.name())
        return func(*args, **(kwargs or {}))


@pytest.fixture
def fast_path_on():
    yield
    fast_path.set_fast_path(True)


def _inputs(config):
    return {**text_inputs(config), **image_inputs(config)}


def _run(model, inputs, *, fast: bool, bf16: bool = False):
    fast_path.set_fast_path(fast)
    recorder = OpRecorder()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), recorder:
        output = model(**inputs)
    return output, recorder.names


def _max_diff(a, b) -> float:
    towers = ("image_output", "text_output", "multimodal_output")
    return max(
        float((getattr(a, t).last_hidden_state.float() - getattr(b, t).last_hidden_state.float()).abs().max())
        for t in towers
    )


def test_towers_run_the_models_attention_kernel(tmp_path):
    """transformers' init sets the kernel on the top config only; the towers read theirs, and must not fall back to
    eager (that made the default FLAVA run eager attention)."""
    model = FlavaModel(tiny_config())
    towers = [model.config.image_config, model.config.text_config, model.config.multimodal_config]
    assert model.config._attn_implementation == "sdpa"
    assert [t._attn_implementation for t in towers] == ["sdpa"] * 3
    assert model.image_model.encoder.layers[0].self_attn.config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path)
    loaded = FlavaModel.from_pretrained(tmp_path)
    assert loaded.config.multimodal_config._attn_implementation == "sdpa"
    eager = FlavaModel.from_pretrained(tmp_path, attn_implementation="eager")
    assert eager.config.text_config._attn_implementation == "eager"
    model.set_attn_implementation("eager")
    assert [t._attn_implementation for t in towers] == ["eager"] * 3
    with pytest.raises(ValueError):
        model.set_attn_implementation("flash_attention_2")
    assert [t._attn_implementation for t in towers] == ["eager"] * 3


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fast_path_reproduces_the_plain_modules(attn, fast_path_on):
    torch.manual_seed(0)
    config = tiny_config()
    model = FlavaModel(config).eval()
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, parameter in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                parameter.add_(0.2 * torch.randn_like(parameter))
    model.set_attn_implementation(attn)
    inputs = _inputs(config)
    assert not bool(inputs["attention_mask"].all())  # padded texts: the masked kernels run too
    fast, fast_ops = _run(model, inputs, fast=True)
    plain, plain_ops = _run(model, inputs, fast=False)
    if not fast_path._onednn_linear_ok():
        pytest.skip(reason="this PyTorch build has no usable oneDNN linear op: the fast path is off")
    assert ONEDNN in fast_ops and ONEDNN not in plain_ops
    assert _max_diff(fast, plain) <= 1e-5
    assert (fast.logits_per_image - plain.logits_per_image).abs().max() <= 1e-5

    # bf16 autocast: no less accurate than the plain modules under autocast
    fast_bf16, ops = _run(model, inputs, fast=True, bf16=True)
    plain_bf16, _ = _run(model, inputs, fast=False, bf16=True)
    assert ONEDNN in ops
    assert _max_diff(fast_bf16, plain) <= max(1.5 * _max_diff(plain_bf16, plain), 2e-2)
    # the residual stream stays fp32 under autocast, as in transformers
    assert fast_bf16.image_output.pre_layernorm_last_hidden_state.dtype == torch.float32
    assert fast_bf16.multimodal_output.pre_layernorm_last_hidden_state.dtype == torch.float32


def test_fast_path_steps_aside(fast_path_on):
    torch.manual_seed(0)
    config = tiny_config()
    model = FlavaForSequenceClassification(config)
    inputs = _inputs(config)
    if not fast_path._onednn_linear_ok():
        pytest.skip(reason="this PyTorch build has no usable oneDNN linear op: the fast path is off")

    # training: gradients need the plain modules
    recorder = OpRecorder()
    with recorder:
        loss = model(**inputs, labels=torch.tensor([0, 1, 2])).loss
    loss.backward()
    assert ONEDNN not in recorder.names
    assert model.flava.image_model.encoder.layers[0].self_attn.q_proj.weight.grad is not None

    model.eval()
    reference, _ = _run(model.flava, inputs, fast=False)
    # a hook on a linear layer or its MLP still fires; the result is unchanged
    layer = model.flava.text_model.encoder.layers[1]
    seen = []
    handle = layer.mlp.fc1.register_forward_hook(lambda module, args, output: seen.append(output.shape))
    hooked, _ = _run(model.flava, inputs, fast=True)
    handle.remove()
    assert seen and _max_diff(hooked, reference) <= 1e-5
    handle = layer.mlp.register_forward_hook(lambda module, args, output: seen.append("mlp"))
    _run(model.flava, inputs, fast=True)
    handle.remove()
    assert "mlp" in seen

    # a replaced projection (an adapter, a quantised layer) is called as it is
    class Shifted(nn.Linear):
        def forward(self, x):
            return super().forward(x) + 1.0

    attention = model.flava.multimodal_model.encoder.layers[0].self_attn
    shifted = Shifted(attention.hidden_size, attention.hidden_size)
    shifted.load_state_dict(attention.v_proj.state_dict())
    original, attention.v_proj = attention.v_proj, shifted
    fast, _ = _run(model.flava, inputs, fast=True)
    plain, _ = _run(model.flava, inputs, fast=False)
    attention.v_proj = original
    assert _max_diff(fast, plain) <= 1e-5 and _max_diff(fast, reference) > 1e-3


@pytest.mark.parametrize("activation", [None, "gelu", "relu"])
def test_fast_linear_matches_the_module(activation, fast_path_on):
    torch.manual_seed(0)
    if not fast_path._onednn_linear_ok():
        pytest.skip(reason="this PyTorch build has no usable oneDNN linear op: the fast path is off")
    act = {None: lambda t: t, "gelu": nn.functional.gelu, "relu": torch.relu}[activation]
    for rows, width, out in ((1, 8, 3), (7, 48, 96), (394, 768, 2304)):
        module = nn.Linear(width, out)
        x = torch.randn(2, rows, width).transpose(0, 1)  # not contiguous
        residual = torch.randn(rows, 2, out)
        with torch.inference_mode():
            expected = act(module(x))
            got = fast_path.fast_linear(module, x, activation=activation)
            with_residual = fast_path.fast_linear(module, x, activation=activation, residual=residual)
        scale = expected.abs().max().item() + 1
        assert (got - expected).abs().max() <= 1e-5 * scale
        assert (with_residual - (expected + residual)).abs().max() <= 1e-5 * scale


def test_bf16_weight_cache_follows_the_weights(fast_path_on):
    """The cached bf16 weights are reused across calls and rebuilt when a weight changes in place or is replaced."""
    torch.manual_seed(0)
    config = tiny_config()
    model = FlavaModel(config).eval()
    inputs = _inputs(config)
    if not fast_path._onednn_linear_ok():
        pytest.skip(reason="this PyTorch build has no usable oneDNN linear op: the fast path is off")

    def fresh():  # the same fast path without the cache
        fast_path.set_fast_path(True, cache_weights=False)
        try:
            return _run(model, inputs, fast=True, bf16=True)[0]
        finally:
            fast_path.set_fast_path(True, cache_weights=True)

    first, _ = _run(model, inputs, fast=True, bf16=True)
    layer = model.text_model.encoder.layers[0]
    assert "_vlzoo_fast_path_cache" in vars(layer.mlp.fc1) and "_vlzoo_fast_path_cache" in vars(layer.self_attn)
    assert _max_diff(_run(model, inputs, fast=True, bf16=True)[0], first) == 0.0
    with torch.no_grad():
        layer.mlp.fc1.weight.mul_(3.0)
        layer.self_attn.k_proj.bias.add_(1.0)
    changed, _ = _run(model, inputs, fast=True, bf16=True)
    assert _max_diff(changed, first) > 1e-3 and _max_diff(changed, fresh()) == 0.0
    state = {
        k: torch.randn_like(v) if k.startswith("text_model.encoder") else v for k, v in model.state_dict().items()
    }
    model.load_state_dict(state)
    assert _max_diff(_run(model, inputs, fast=True, bf16=True)[0], fresh()) == 0.0
    fast_path.clear_weight_cache(model)
    assert "_vlzoo_fast_path_cache" not in vars(layer.mlp.fc1)
