"""A tiny deterministic regression model, objective and dataset that exercise the trainer quickly on CPU."""

from dataclasses import dataclass

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput

from vlzoo.training import TrainingArguments, evaluation_batches, mean_loss


@strict
class ToyRegressionConfig(PreTrainedConfig):
    """Sizes of the toy regressor: `num_layers` residual blocks of width `hidden_size` on `input_size` features."""

    model_type = "vlzoo_toy_regression"

    input_size: int = 6
    hidden_size: int = 12
    num_layers: int = 2


@dataclass
class ToyRegressionOutput(ModelOutput):
    """`loss`: mean squared error (scalar) when `return_loss=True`; `predictions`: `[batch]`."""

    loss: torch.FloatTensor | None = None
    predictions: torch.FloatTensor | None = None


class ToyBlock(GradientCheckpointingLayer):
    """Pre-norm residual block that counts its forward calls (a checkpointed block also runs in the backward)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.layer_norm = nn.LayerNorm(hidden_size)
        self.fc = nn.Linear(hidden_size, hidden_size)
        self.forward_calls = 0

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        self.forward_calls += 1
        return hidden_states + torch.tanh(self.fc(self.layer_norm(hidden_states)))


class ToyRegressionModel(PreTrainedModel):
    config: ToyRegressionConfig
    base_model_prefix = "toy"
    main_input_name = "inputs"
    supports_gradient_checkpointing = True

    def __init__(self, config: ToyRegressionConfig):
        super().__init__(config)
        self.embed = nn.Linear(config.input_size, config.hidden_size)
        self.layers = nn.ModuleList(ToyBlock(config.hidden_size) for _ in range(config.num_layers))
        self.head = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor | None = None, return_loss: bool = False
    ) -> ToyRegressionOutput:
        hidden_states = self.embed(inputs)
        for layer in self.layers:
            hidden_states = layer(hidden_states)
        predictions = self.head(hidden_states).squeeze(-1)
        loss = None
        if return_loss:
            if targets is None:
                raise ValueError("return_loss=True needs targets.")
            loss = nn.functional.mse_loss(predictions.float(), targets.float())
        return ToyRegressionOutput(loss=loss, predictions=predictions)


class ToyObjective:
    """Mean-squared-error objective; records the training ids it collated and how evaluation saw the model."""

    def __init__(self):
        self.collated_ids: list[int] = []
        self.evaluated_in_train_mode: list[bool] = []
        self.epochs_set: list[tuple[int, int]] = []

    def set_epoch(self, epoch: int, seed: int) -> None:
        self.epochs_set.append((epoch, seed))

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        self.collated_ids.extend(example["id"] for example in examples)
        return self.tensors(examples)

    def tensors(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        return {
            "inputs": torch.tensor([example["x"] for example in examples], dtype=torch.float32),
            "targets": torch.tensor([example["y"] for example in examples], dtype=torch.float32),
        }

    def compute_loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(**batch, return_loss=True).loss

    def evaluate(self, model, dataset, accelerator, batch_size: int) -> dict[str, float]:
        self.evaluated_in_train_mode.append(model.training)
        batches = evaluation_batches(dataset, self.tensors, accelerator, batch_size)
        return {"eval_loss": mean_loss(self.compute_loss, model, batches, accelerator)}


def toy_dataset(num_examples: int, seed: int = 1) -> list[dict]:
    """Rows `{"id", "x", "y"}` with a smooth learnable target `y = tanh(x @ w) + 0.5 * x[0]`."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(num_examples, ToyRegressionConfig().input_size, generator=generator)
    w = torch.randn(x.shape[1], generator=generator)
    y = torch.tanh(x @ w) + 0.5 * x[:, 0]
    return [{"id": i, "x": x[i].tolist(), "y": float(y[i])} for i in range(num_examples)]


def toy_model(seed: int = 0) -> ToyRegressionModel:
    torch.manual_seed(seed)
    return ToyRegressionModel(ToyRegressionConfig())


def toy_args(output_dir, **overrides) -> TrainingArguments:
    values = {
        "output_dir": str(output_dir),
        "per_device_batch_size": 8,
        "learning_rate": 1e-2,
        "log_every_steps": 1,
        "progress_bar": False,
        "save_final_model": False,
    }
    values.update(overrides)
    return TrainingArguments(**values)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}


def assert_same_weights(actual: dict, expected: dict, atol: float = 0.0) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=atol, rtol=0.0, msg=f"parameter {name} differs")
