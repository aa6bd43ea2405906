"""Two CPU processes: the gathered contrastive loss and its gradients equal the single-process ones."""

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from accelerate import debug_launcher
from safetensors.torch import load_file, save_file
from torch import nn

from vlzoo.losses import all_gather_with_grad, contrastive_loss, world_info

from ..subprocesses import run_in_new_session

WORLD_SIZE = 2
LOCAL_BATCH = 3
IMAGE_FEATURES, TEXT_FEATURES, EMBED_DIM = 7, 6, 5
TOLERANCE = 1e-5
LAUNCH_TIMEOUT_S = 120


class TinyDualProjection(nn.Module):
    """Image and text projections plus a learned log logit scale, as in CLIP's heads."""

    def __init__(self):
        super().__init__()
        self.visual_projection = nn.Linear(IMAGE_FEATURES, EMBED_DIM)
        self.text_projection = nn.Linear(TEXT_FEATURES, EMBED_DIM)
        self.logit_scale = nn.Parameter(torch.tensor(2.3))

    def forward(self, image_features, text_features):
        image_embeds = F.normalize(self.visual_projection(image_features), dim=-1)
        text_embeds = F.normalize(self.text_projection(text_features), dim=-1)
        return image_embeds, text_embeds, self.logit_scale.exp()


def _make_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    total = WORLD_SIZE * LOCAL_BATCH
    torch.manual_seed(0)
    model = TinyDualProjection()
    inputs = {
        "image_embeds": torch.randn(total, EMBED_DIM, generator=generator),
        "text_embeds": torch.randn(total, EMBED_DIM, generator=generator),
        "logit_scale": torch.tensor(9.0),
        "image_features": torch.randn(total, IMAGE_FEATURES, generator=generator),
        "text_features": torch.randn(total, TEXT_FEATURES, generator=generator),
    }
    inputs.update({f"param.{name}": value.detach().clone() for name, value in model.state_dict().items()})
    return inputs


def _rank_worker(out_dir: str, inputs: dict[str, torch.Tensor]) -> None:
    """Runs in each process; writes this rank's losses and gradients for the parent to check."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    torch.set_num_threads(1)
    # The process is forked from pytest: drop any Accelerator state the parent created in other tests.
    AcceleratorState._reset_state(reset_partial_state=True)
    rank, world_size = world_info()
    rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    results: dict[str, torch.Tensor] = {"world_size": torch.tensor(world_size)}

    # Embedding-level check: leaves before normalisation, the scale as a leaf.
    image = inputs["image_embeds"][rows].clone().requires_grad_(True)
    text = inputs["text_embeds"][rows].clone().requires_grad_(True)
    scale = inputs["logit_scale"].clone().requires_grad_(True)
    loss = contrastive_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), scale)
    loss.backward()
    results.update(loss=loss.detach(), image_grad=image.grad, text_grad=text.grad, scale_grad=scale.grad)
    local_only = contrastive_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), scale, gather=False)
    results["local_loss"] = local_only.detach()

    # Parameter-level check through DDP, which averages parameter gradients over ranks.
    accelerator = Accelerator(cpu=True)
    results["accelerator_processes"] = torch.tensor(accelerator.num_processes)
    model = TinyDualProjection()
    model.load_state_dict({key[len("param.") :]: value for key, value in inputs.items() if key.startswith("param.")})
    model = accelerator.prepare(model)
    results["is_ddp"] = torch.tensor(isinstance(model, nn.parallel.DistributedDataParallel))
    image_embeds, text_embeds, logit_scale = model(inputs["image_features"][rows], inputs["text_features"][rows])
    ddp_loss = contrastive_loss(image_embeds, text_embeds, logit_scale)
    accelerator.backward(ddp_loss)
    results["ddp_loss"] = ddp_loss.detach()
    for name, parameter in accelerator.unwrap_model(model).named_parameters():
        results[f"grad.{name}"] = parameter.grad.detach().clone()

    # Unequal local batches must fail on every rank, before any data is exchanged.
    size = LOCAL_BATCH if rank == 0 else LOCAL_BATCH - 1
    errors = {}
    try:
        contrastive_loss(F.normalize(torch.randn(size, EMBED_DIM), dim=-1), F.normalize(torch.randn(size, 5)), scale)
    except ValueError as error:
        errors["contrastive"] = str(error)
    try:
        all_gather_with_grad(torch.zeros(2, 3 if rank == 0 else 4))
    except ValueError as error:
        errors["trailing"] = str(error)

    save_file({key: value.contiguous() for key, value in results.items()}, f"{out_dir}/rank{rank}.safetensors")
    Path(out_dir, f"rank{rank}_errors.json").write_text(json.dumps(errors))


def _launch(out_dir: str) -> None:
    """Entry point of the fresh interpreter that forks the ranks (see `rank_results`)."""
    torch.set_num_threads(1)
    inputs = _make_inputs()
    save_file(inputs, f"{out_dir}/inputs.safetensors")
    debug_launcher(_rank_worker, args=(out_dir, inputs), num_processes=WORLD_SIZE)


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Run both ranks and return the inputs they used and each rank's results.

    `debug_launcher` forks. A process that has already run an OpenMP-parallel torch kernel (as this pytest process
    may have, in any earlier test) leaves its children deadlocked in libgomp, so the ranks are forked from a fresh
    interpreter that pins one thread before any kernel runs. A failure inside a rank makes that interpreter exit
    non-zero (torch.multiprocessing re-raises it), which fails the tests.
    """
    out_dir = tmp_path_factory.mktemp("two_ranks")
    command = [sys.executable, "-m", "tests.losses.test_distributed_gather", str(out_dir)]
    repo_root = Path(__file__).resolve().parents[2]
    run = run_in_new_session(command, timeout=LAUNCH_TIMEOUT_S, what="the 2-process run", cwd=repo_root)
    output = run.stdout
    assert run.returncode == 0, f"the 2-process run failed:\n{output[-4000:]}"
    inputs = load_file(out_dir / "inputs.safetensors")
    results = [
        {
            "tensors": load_file(out_dir / f"rank{rank}.safetensors"),
            "errors": json.loads((out_dir / f"rank{rank}_errors.json").read_text()),
        }
        for rank in range(WORLD_SIZE)
    ]
    return inputs, results


@pytest.fixture(scope="module")
def inputs(rank_results) -> dict[str, torch.Tensor]:
    return rank_results[0]


@pytest.fixture(scope="module")
def rank_outputs(rank_results) -> list[dict]:
    return rank_results[1]


def _single_process_embedding_reference(inputs):
    image = inputs["image_embeds"].clone().requires_grad_(True)
    text = inputs["text_embeds"].clone().requires_grad_(True)
    scale = inputs["logit_scale"].clone().requires_grad_(True)
    loss = contrastive_loss(F.normalize(image, dim=-1), F.normalize(text, dim=-1), scale)
    loss.backward()
    return loss.detach(), image.grad, text.grad, scale.grad


def test_runs_two_ranks(rank_outputs):
    for rank, result in enumerate(rank_outputs):
        assert int(result["tensors"]["world_size"]) == WORLD_SIZE, f"rank {rank} did not see 2 processes"
        assert int(result["tensors"]["accelerator_processes"]) == WORLD_SIZE
        assert bool(result["tensors"]["is_ddp"]), "Accelerator.prepare did not wrap the model in DDP"


def test_mean_of_rank_losses_equals_single_process_loss(rank_outputs, inputs):
    reference, _, _, _ = _single_process_embedding_reference(inputs)
    rank_losses = torch.stack([result["tensors"]["loss"] for result in rank_outputs])
    torch.testing.assert_close(rank_losses.mean(), reference, atol=TOLERANCE, rtol=0)
    # Global negatives matter: the local-only loss differs, so the check above is not vacuous.
    local_losses = torch.stack([result["tensors"]["local_loss"] for result in rank_outputs])
    assert (local_losses.mean() - reference).abs() > 1e-3


def test_embedding_grads_are_world_size_times_single_process_grads(rank_outputs, inputs):
    _, image_grad, text_grad, scale_grad = _single_process_embedding_reference(inputs)
    for rank, result in enumerate(rank_outputs):
        rows = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
        tensors = result["tensors"]
        torch.testing.assert_close(tensors["image_grad"], WORLD_SIZE * image_grad[rows], atol=TOLERANCE, rtol=0)
        torch.testing.assert_close(tensors["text_grad"], WORLD_SIZE * text_grad[rows], atol=TOLERANCE, rtol=0)
    # logit_scale is not gathered: each rank holds the gradient of its own loss; their mean is the reference.
    rank_scale_grads = torch.stack([result["tensors"]["scale_grad"] for result in rank_outputs])
    torch.testing.assert_close(rank_scale_grads.mean(), scale_grad, atol=TOLERANCE, rtol=0)


def test_ddp_parameter_grads_equal_single_process_grads(rank_outputs, inputs):
    model = TinyDualProjection()
    model.load_state_dict({key[len("param.") :]: value for key, value in inputs.items() if key.startswith("param.")})
    loss = contrastive_loss(*model(inputs["image_features"], inputs["text_features"]))
    loss.backward()
    rank_losses = torch.stack([result["tensors"]["ddp_loss"] for result in rank_outputs])
    torch.testing.assert_close(rank_losses.mean(), loss.detach(), atol=TOLERANCE, rtol=0)
    for name, parameter in model.named_parameters():
        for rank, result in enumerate(rank_outputs):
            torch.testing.assert_close(
                result["tensors"][f"grad.{name}"],
                parameter.grad,
                atol=TOLERANCE,
                rtol=0,
                msg=lambda message, name=name, rank=rank: f"grad of {name} on rank {rank}: {message}",
            )


def test_unequal_batch_sizes_raise_on_every_rank(rank_outputs):
    for rank, result in enumerate(rank_outputs):
        message = result["errors"].get("contrastive")
        assert message is not None, f"rank {rank} did not raise for unequal local batch sizes"
        assert f"[{LOCAL_BATCH}, {LOCAL_BATCH - 1}]" in message
        trailing = result["errors"].get("trailing")
        assert trailing is not None and "[3, 4]" in trailing, f"rank {rank}: {trailing}"


def test_single_process_gather_is_identity():
    assert world_info() == (0, 1)
    tensor = torch.randn(4, 3, requires_grad=True)
    assert all_gather_with_grad(tensor) is tensor


if __name__ == "__main__":
    _launch(sys.argv[1])
