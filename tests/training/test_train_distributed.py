"""Two CPU processes under torchrun (MULTI_CPU, gloo): synchronised gradients, sharded data, one final save."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlzoo.training import checkpoint_dirs, train

from ..subprocesses import run_in_new_session
from .distributed_run import EVAL_ROWS, RUN, TRAIN_ROWS
from .toy import ToyObjective, ToyRegressionModel, assert_same_weights, toy_args, toy_dataset, toy_model, weights

REPO_ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(*script_args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Launch `distributed_run` on 2 fresh processes (forking this process could deadlock OpenMP)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "tests.training.distributed_run",
        *script_args,
    ]
    # CPU processes even where a GPU exists: two ranks cannot share one device.
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "CUDA_VISIBLE_DEVICES": "",
    }
    return run_in_new_session(command, timeout=timeout, what="torchrun", cwd=REPO_ROOT, env=env)


def test_two_processes_train_in_sync_and_match_one_process(tmp_path):
    output_dir, results_dir = tmp_path / "two", tmp_path / "results"
    results_dir.mkdir()
    run = _torchrun(str(output_dir), str(results_dir))
    assert run.returncode == 0, run.stdout[-4000:]
    ranks = [torch.load(results_dir / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    reports = [rank["report"] for rank in ranks]

    assert [report["is_local_main_process"] for report in reports] == [True, False]
    for report in reports:
        assert report["num_processes"] == 2 and report["distributed_type"].endswith("MULTI_CPU")
        assert report["global_step"] == 8
        assert len(report["collated_ids"]) == TRAIN_ROWS  # 2 epochs x 16 rows per rank
    # Each epoch is split between the ranks without overlap.
    for epoch in range(2):
        shards = [set(report["collated_ids"][epoch * 16 : (epoch + 1) * 16]) for report in reports]
        assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(range(TRAIN_ROWS))
    # Gradients were averaged: identical weights on both ranks ...
    assert_same_weights(ranks[0]["weights"], ranks[1]["weights"])
    assert reports[0]["eval_history"] == reports[1]["eval_history"]
    assert [step for step, _ in reports[0]["eval_history"]] == [4, 8]
    assert reports[0]["train_loss_history"] == reports[1]["train_loss_history"]

    # ... equal to one process seeing the same global batches.
    single_model = toy_model()
    single = train(
        single_model,
        ToyObjective(),
        toy_dataset(TRAIN_ROWS),
        args=toy_args(tmp_path / "one", per_device_batch_size=8, **RUN),
        eval_dataset=toy_dataset(EVAL_ROWS, seed=9),
    )
    assert single.global_step == 8
    assert_same_weights(ranks[0]["weights"], weights(single_model), atol=1e-5)
    pairs = zip(reports[0]["eval_history"], single.eval_history, strict=True)
    for (step, metrics), (single_step, single_metrics) in pairs:
        assert step == single_step and metrics["eval_loss"] == pytest.approx(single_metrics["eval_loss"], rel=1e-4)
    losses = [loss for _, loss in reports[0]["train_loss_history"]]
    assert losses == pytest.approx([loss for _, loss in single.train_loss_history], rel=1e-4)

    # Saved once, by the main process, and reloadable; each state folder holds both ranks' RNG states.
    assert (results_dir / "processor_saves.log").read_text().split() == ["0"]
    assert sorted(p.name for p in output_dir.iterdir()) == [
        ".vlzoo-output.json",
        "README.md",
        "checkpoints",
        "config.json",
        "model.safetensors",
        "processor_config.json",
    ]
    reloaded = ToyRegressionModel.from_pretrained(output_dir)
    assert_same_weights(weights(reloaded), ranks[0]["weights"])
    assert [p.name for p in checkpoint_dirs(output_dir)] == ["step_4", "step_8"]
    state_files = {p.name for p in (output_dir / "checkpoints" / "step_8").iterdir()}
    assert {"random_states_0.pkl", "random_states_1.pkl", "trainer_state.json"} <= state_files
    assert json.loads((output_dir / "checkpoints" / "step_8" / "trainer_state.json").read_text())["global_step"] == 8


def test_a_failing_rank_fails_the_launch(tmp_path):
    run = _torchrun(str(tmp_path / "out"), str(tmp_path), "--fail-on-rank-1")
    assert run.returncode != 0
    assert "rank 1 failed on purpose" in run.stdout
