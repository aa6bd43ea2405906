"""Running a multi-process launch from a test: a fresh interpreter in its own session, ended whole on a timeout."""

import os
import signal
import subprocess

import pytest


def run_in_new_session(
    command: list[str], *, timeout: float, what: str, **popen_kwargs
) -> subprocess.CompletedProcess:
    """Run `command` with stdout and stderr merged; on timeout kill its whole process group and fail the test.

    Launches fork worker processes; a new session lets a hang be ended together with every worker, and a fresh
    interpreter avoids forking a pytest process whose OpenMP threads would deadlock the children.
    """
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, **popen_kwargs
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{what} did not finish within {timeout} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output)
