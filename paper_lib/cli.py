"""Command line: ``python -m paper_lib synth|predict ...`` (see ``--help``)."""

from __future__ import annotations

import argparse
import sys


def _synth(args) -> int:
    from . import synthesis

    path = synthesis.build_profile_grid(args.profile, workers=args.workers)
    print(f"grid: {path}")
    print(f"manifest: {path}.manifest.json")
    return 0


def _run(args) -> int:
    from .pipeline import NotebookFailed, run_all

    try:
        run_all(args.profile, start=args.start, update_notebooks=args.update_notebooks)
    except NotebookFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paper_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="build the synthetic grid of a profile (resumable)")
    synth.add_argument("--profile", default="smoke", help="smoke, cpu or paper")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.set_defaults(func=_synth)
    run = sub.add_parser("run", help="run the notebooks in order with papermill")
    run.add_argument("--profile", default="smoke", help="smoke (default), cpu or paper")
    run.add_argument("--from", dest="start", default=None, help="first notebook, e.g. 03")
    run.add_argument("--update-notebooks", action="store_true",
                     help="store executed smoke notebooks as notebooks/*.ipynb")
    run.set_defaults(func=_run)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
