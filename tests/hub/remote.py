"""Running checks in a fresh interpreter where `import vlzoo` raises (tests/hub/remote_loader.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.subprocesses import run_in_new_session

RUNNER = Path(__file__).with_name("remote_loader.py")
TIMEOUT = 300


def run_remote(
    checks: list[dict],
    tmp_path: Path,
    env_overrides: dict[str, str | None] | None = None,
    *,
    block_vlzoo: bool = True,
) -> dict:
    """Run `checks` in a fresh interpreter without vlzoo; returns its environment report and one result per check.

    The interpreter starts isolated (`-I`: no PYTHONPATH, no script folder on the path) in a folder outside the
    repository, with its own module cache and stdin from /dev/null; `env_overrides` sets (or, with None, removes)
    further variables. With `block_vlzoo=False` the installed vlzoo is imported there instead.
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = tmp_path / "spec.json"
    results = tmp_path / "results.json"
    spec.write_text(json.dumps({"checks": checks, "results": str(results), "block_vlzoo": block_vlzoo}))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HOME=str(tmp_path / "hf_home"),
        HF_HUB_OFFLINE="1",
        OMP_NUM_THREADS="1",
        TRANSFORMERS_VERBOSITY="error",
    )
    for key, value in (env_overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = run_in_new_session(
        [sys.executable, "-I", str(RUNNER), str(spec)],
        timeout=TIMEOUT,
        what="the remote-code loader",
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0 and results.is_file(), done.stdout[-4000:]
    report = json.loads(results.read_text())
    environment = report["environment"]
    if block_vlzoo:
        assert environment["find_spec"].startswith("ImportError"), environment
        assert environment["vlzoo_modules"] == [], environment
    return report


def ok(result: dict, what: str) -> dict:
    assert result["ok"], f"{what} failed without vlzoo:\n{result.get('trace', result)}"
    assert result.get("module", "transformers_modules.").startswith("transformers_modules."), (what, result)
    return result
