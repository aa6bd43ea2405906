"""Run under `torchrun --nproc_per_node 2 -m tests.training.distributed_run OUT RESULTS [--fail-on-rank-1]`."""

import os
import sys

import torch
import torch.distributed as dist
from accelerate import PartialState

from vlzoo.training import train

from .toy import ToyObjective, toy_args, toy_dataset, toy_model, weights

# 32 rows: 2 processes x 4 rows = the same 8-row global batch as one process with 8 rows, 4 steps per epoch.
TRAIN_ROWS, EVAL_ROWS = 32, 16
RUN = {"num_epochs": 2, "learning_rate": 2e-2, "warmup_steps": 1, "eval_every_steps": 4, "save_final_model": True}


class RecordingProcessor:
    """Stands in for a processor; logs which rank saved it so a test can tell the save happened once."""

    def __init__(self, log_path: str):
        self.log_path = log_path

    def save_pretrained(self, directory) -> None:
        with open(self.log_path, "a", encoding="utf-8") as log:
            log.write(f"{dist.get_rank() if dist.is_initialized() else 'single'}\n")
        (directory / "processor_config.json").write_text("{}")


def main(output_dir: str, results_dir: str, fail_on_rank_1: bool) -> None:
    if fail_on_rank_1 and os.environ["RANK"] == "1":
        raise RuntimeError("rank 1 failed on purpose")  # rank 0 goes on and blocks in the first collective
    objective = ToyObjective()
    model = toy_model()
    result = train(
        model,
        objective,
        toy_dataset(TRAIN_ROWS),
        args=toy_args(output_dir, per_device_batch_size=4, save_state_every_steps=4, **RUN),
        eval_dataset=toy_dataset(EVAL_ROWS, seed=9),
        processor=RecordingProcessor(f"{results_dir}/processor_saves.log"),
    )
    state = PartialState()  # set up by train(); creating it earlier without cpu=True would make it single-process
    report = {
        "num_processes": state.num_processes,
        "distributed_type": str(state.distributed_type),
        "is_local_main_process": state.is_local_main_process,
        "global_step": result.global_step,
        "collated_ids": objective.collated_ids,
        "eval_history": result.eval_history,
        "train_loss_history": result.train_loss_history,
    }
    torch.save({"weights": weights(model), "report": report}, f"{results_dir}/rank{state.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--fail-on-rank-1" in sys.argv[3:])
