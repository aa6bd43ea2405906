"""The `vlzoo` command: `demo`, `train`, `convert`, `eval`.

Expected failures (bad arguments or config values, missing or unusable files, a refused output folder, a broken
state folder, a diverged run) end with one `error: ...` line on stderr and exit status 1, without a traceback;
argument-syntax errors exit with argparse's status 2.
"""

import argparse
import sys
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
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        num_train=args.num_train,
        num_test=args.num_test,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"saved: {args.output_dir}/ms_clip, {args.output_dir}/vanilla; figure: {result.figure}")
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


def _convert(args: argparse.Namespace, rest: list[str]) -> int:
    if args.family != "ms_clip":
        print(f"error: no converter for family {args.family!r}; available: ms_clip", file=sys.stderr)
        return 2
    from .conversion import add_common_cli_arguments, run_from_args
    from .models.ms_clip.conversion_ms_clip import VARIANTS, MsClipConverter

    parser = argparse.ArgumentParser(prog="vlzoo convert ms_clip")
    add_common_cli_arguments(parser, variants=VARIANTS)
    arguments = parser.parse_args(rest)
    try:
        return run_from_args(MsClipConverter(), arguments)
    except EXPECTED_ERRORS as error:
        return _report(error)


def _eval(args: argparse.Namespace) -> int:
    from .evaluation.zero_shot_shapes import evaluate_zero_shot_on_shapes, local_model_dir

    local_model_dir(args.model)  # before anything heavy: a missing folder fails at once, never via the Hub
    accuracy = evaluate_zero_shot_on_shapes(args.model, num_test=args.num_test, image_size=args.image_size)
    print(f"zero-shot accuracy on shapes/test ({args.num_test} images): {accuracy:.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlzoo", description="vision-language model zoo for transformers")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo",
        help="train MS-CLIP and vanilla CLIP on shapes and compare zero-shot accuracy",
        description="Writes OUTPUT_DIR/ms_clip, OUTPUT_DIR/vanilla, zero_shot.png and results.json all at once, when "
        "everything succeeded. An existing non-empty OUTPUT_DIR is refused (nothing is trained); --overwrite "
        "replaces one that an earlier vlzoo run wrote and that holds nothing else.",
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
    demo.add_argument("--max-steps", type=int, default=250, help="optimizer steps per model (same for both)")
    demo.add_argument("--batch-size", type=int, default=64)
    demo.add_argument("--num-train", type=int, default=6000, help="training scenes to generate")
    demo.add_argument("--num-test", type=int, default=500, help="test scenes to evaluate")
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

    convert = commands.add_parser(
        "convert", help="convert an original checkpoint", add_help=False, usage="vlzoo convert FAMILY --checkpoint ..."
    )
    convert.add_argument("family", help="family key, e.g. ms_clip")
    convert.set_defaults(handler=None)

    evaluate = commands.add_parser("eval", help="zero-shot accuracy of a saved contrastive model on shapes/test")
    evaluate.add_argument("model", help="a local save_pretrained folder (never looked up on the Hub)")
    evaluate.add_argument("--num-test", type=int, default=500)
    evaluate.add_argument("--image-size", type=int, default=64)
    evaluate.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `vlzoo` console script; returns the exit status.

    Every sub-command reports the package's expected errors as one `error: ...` line on stderr (status 1).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        if argv[:1] == ["convert"]:
            args, rest = parser.parse_known_args(argv)
            return _convert(args, rest)
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse printed the usage and its error, or the help
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.handler(args)
    except EXPECTED_ERRORS as error:
        return _report(error)


if __name__ == "__main__":
    raise SystemExit(main())
