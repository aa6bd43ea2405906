"""The `vlzoo` command: `demo`, `train`, `convert`, `eval`, `publish`, `list`.

Expected failures (bad arguments or config values, missing or unusable files, a refused output folder, a broken
state folder, a diverged run) end with one `error: ...` line on stderr and exit status 1, without a traceback;
argument-syntax errors exit with argparse's status 2.
"""

import argparse
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

# What the package raises for a user's mistake or an unusable file; anything else is a bug and keeps its traceback.
EXPECTED_ERRORS = (ValueError, TypeError, OSError, FloatingPointError)


def _report(error: BaseException) -> int:
    """Print `error` as one line on stderr; returns the exit status 1."""
    print(f"error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
    return 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(
        args.output_dir,
        family=args.family,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    saved = ", ".join(f"{args.output_dir}/{name}" for name in result.model_names)
    print(f"saved: {saved}" + (f"; figure: {result.figure}" if result.figure is not None else ""))
    print(f"time: {result.seconds:.0f} s")
    print(result.summary())
    return 0


def _train(args: argparse.Namespace) -> int:
    from .training.recipe import run_training

    config, overrides = args.config, list(args.overrides)
    if config is not None and "=" in config and not Path(config).exists():
        config, overrides = None, [config, *overrides]  # flags only, no file
    result = run_training(config, overrides=overrides)
    saved = f"model saved to {result.final_model_dir}" if result.final_model_dir else "no final model saved"
    print(f"trained {result.global_step} steps in {result.elapsed_seconds:.0f} s; {saved}")
    return 0


def _converter_keys() -> list[str]:
    from .registry import families

    return [family.key for family in families() if family.converter is not None]


def _named(key: str) -> str:
    from .registry import get_family

    return f"{key} ({get_family(key).name})"


def _demo_families() -> list:
    from .registry import families

    return [family for family in families() if family.demo is not None]


def _convert(family: str, rest: list[str]) -> int:
    """`vlzoo convert FAMILY ...`: the family's converter, with the command line of its conversion/FAMILY/convert.py."""
    from .conversion import run_cli
    from .registry import get_family

    converters = _converter_keys()
    if family not in converters:
        print(
            f"error: no converter for family {family!r}; families with a converter: {', '.join(converters)}",
            file=sys.stderr,
        )
        return 2
    return run_cli(get_family(family).build_converter(), rest, prog=f"vlzoo convert {family}")


def _model_type(model_dir: Path) -> str | None:
    """The `model_type` in a saved folder's config.json (read as JSON: nothing is loaded or built)."""
    import json

    path = model_dir / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise ValueError(f"{path} is not a valid config.json ({type(error).__name__})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    return model_type if isinstance(model_type, str) else None


def _eval(args: argparse.Namespace) -> int:
    from .evaluation.zero_shot_shapes import local_model_dir
    from .registry import DEFAULT_EVALUATIONS, family_for_model_type

    path = local_model_dir(args.model)  # before anything heavy: a missing folder fails at once, never via the Hub
    family = family_for_model_type(_model_type(path))
    if family is not None:
        task = args.task or family.default_task
        evaluation = family.evaluation(task)
    else:  # a folder of another library's model (e.g. transformers' CLIP): the task's default evaluation
        task = args.task or "contrastive"
        if task not in DEFAULT_EVALUATIONS:
            raise ValueError(
                f"{args.model} is not a vlzoo model; --task {task!r} has no default evaluation (defaults: "
                f"{', '.join(DEFAULT_EVALUATIONS)})"
            )
        evaluation = DEFAULT_EVALUATIONS[task]
    value = evaluation.run(path, num_test=args.num_test, image_size=args.image_size)
    print(evaluation.describe(value, args.num_test))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from .hub import publish

    result = publish(args.folder, args.repo_id, private=args.private, remote_code=not args.no_remote_code)
    code = f", with remote code ({len(result.remote_code)} modules)" if result.remote_code else ""
    print(f"published {len(result.files)} files to {result.url} (commit {result.commit[:12]}){code}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .hub.cards import format_pretrained, list_pretrained

    print(format_pretrained(list_pretrained(args.family), as_json=args.json))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlzoo", description="vision-language model zoo for transformers")
    commands = parser.add_subparsers(dest="command", required=True)

    demos = _demo_families()
    default_demo = demos[0].key if demos else "none"
    listing = "\n".join(
        f"  {' | '.join((family.key, *family.demo.aliases))} ({family.name}): {family.demo.description}"
        for family in demos
    )
    listing = listing or "  none"
    demo = commands.add_parser(
        "demo",
        help=f"train a family's small demo models on shapes and compare them (default: {default_demo})",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Families with a demo (default: {default_demo}):\n{listing}\n\n"
        + textwrap.fill(
            "Writes one folder per model, the figure and results.json into OUTPUT_DIR all at once, when everything "
            "succeeded. An existing non-empty OUTPUT_DIR is refused (nothing is trained); --overwrite replaces one "
            "that an earlier vlzoo run wrote and that holds nothing else. The budget options default to the "
            "family's demo.",
            width=100,
        ),
    )
    demo.add_argument(
        "family",
        nargs="?",
        choices=[name for family in demos for name in (family.key, *family.demo.aliases)],
        help=f"the family whose demo runs, or its demo's alias (default: {default_demo})",
    )
    demo.add_argument(
        "--output-dir", default="vlzoo-demo", help="where the models and the figure go (absent or empty)"
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUTPUT_DIR written by vlzoo (once the new one is complete); folders holding "
        "anything else are still refused",
    )
    demo.add_argument("--max-steps", type=int, help="optimizer steps per model (the same for every model)")
    demo.add_argument("--batch-size", type=int, help="training examples per step")
    demo.add_argument("--num-train", type=int, help="training scenes to generate")
    demo.add_argument("--num-test", type=int, help="test scenes to evaluate")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_demo)

    train = commands.add_parser(
        "train",
        help="train a model through Accelerate from a YAML/JSON config (sections model, data, training)",
        description="Run as `vlzoo train cfg.yaml` or on several processes with "
        "`torchrun --nproc_per_node N -m vlzoo train cfg.yaml` / `accelerate launch -m vlzoo train cfg.yaml`. "
        "training.output_dir must be absent or empty: an existing folder is refused, never replaced (choose a new "
        "one), except with training.resume_from=latest, which continues the run saved in it. Mixed precision "
        "follows the launcher (accelerate launch --mixed_precision bf16) unless training.mixed_precision is set.",
    )
    train.add_argument("config", nargs="?", help="YAML or JSON file; flags below override it")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="SECTION.KEY=VALUE",
        help="overrides such as training.max_steps=100 model.preset=vanilla data.num_train=500",
    )
    train.set_defaults(handler=_train)

    converters = _converter_keys()
    convert = commands.add_parser(
        "convert",
        help="convert an original checkpoint",
        description="Convert a released original checkpoint into a save_pretrained folder, with a parity report. "
        "`vlzoo convert FAMILY --help` lists the family's options.",
        usage="vlzoo convert FAMILY --checkpoint FILE --output-dir DIR [options]",
    )
    convert.add_argument(
        "family", choices=converters, metavar="FAMILY", help=f"one of: {', '.join(map(_named, converters))}"
    )
    convert.set_defaults(handler=lambda args: _convert(args.family, []))

    evaluate = commands.add_parser(
        "eval",
        help="score a saved model on shapes/test with its family's evaluation of a task",
        description="The task defaults to the family's first one; contrastive models are scored by zero-shot "
        "accuracy, also for folders of other libraries' dual encoders.",
    )
    evaluate.add_argument("model", help="a local save_pretrained folder (never looked up on the Hub)")
    evaluate.add_argument("--task", help="the task whose evaluation runs (default: the family's first task)")
    evaluate.add_argument("--num-test", type=int, default=500)
    evaluate.add_argument("--image-size", type=int, default=64)
    evaluate.set_defaults(handler=_eval)

    publish = commands.add_parser(
        "publish",
        help="upload a saved folder to the Hugging Face Hub, with the code that loads it without vlzoo",
        description="Checks the folder (safetensors weights, config.json, processor files, README.md metadata), "
        "creates the repository if needed and uploads the folder through huggingface_hub. The model's code and "
        "auto_map are added to the upload (not to the folder) unless --no-remote-code. The token is HF_TOKEN or "
        "the one stored by `hf auth login`; HF_ENDPOINT selects another Hub.",
    )
    publish.add_argument("folder", type=Path, metavar="DIR", help="a save_pretrained or vlzoo convert folder")
    publish.add_argument("--repo-id", required=True, metavar="ORG/NAME", help="the Hub repository to upload to")
    publish.add_argument("--private", action="store_true", help="create the repository as private")
    publish.add_argument(
        "--no-remote-code",
        action="store_true",
        help="upload the folder as it is (it then loads only where vlzoo is installed)",
    )
    publish.set_defaults(handler=_publish)

    listing = commands.add_parser(
        "list",
        help="list the released original checkpoints: family, variant, task, resolution, conversion status",
        description="Every released original checkpoint with a card in model_cards/, named by the Hub repository "
        "(and output folder) its conversion gets; status is 'available' when its family's converter handles it.",
    )
    listing.add_argument("--family", help="only this family's checkpoints (a registry key such as ms_clip)")
    listing.add_argument("--json", action="store_true", help="print a JSON list of objects instead of a table")
    listing.set_defaults(handler=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vlzoo` console script; returns the exit status.

    Every sub-command reports the package's expected errors as one `error: ...` line on stderr (status 1).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if argv[:1] == ["convert"] and argv[1:2] and not argv[1].startswith("-"):
            return _convert(argv[1], argv[2:])  # the family's own parser reads the rest (and its --help)
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage and its error, or the help
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as error:
        return _report(error)


if __name__ == "__main__":
    raise SystemExit(main())
