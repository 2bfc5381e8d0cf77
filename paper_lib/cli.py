"""Command line: ``python -m paper_lib synth|run|predict|report ...`` (see ``--help``).

This is one of the two edges where a profile name is resolved (:func:`get_profile`; the other
is a notebook's ``profile`` parameter, :func:`paper_lib.notebook.start`).
"""

from __future__ import annotations

import argparse
import sys

from .profiles import get_profile


def _synth(args) -> int:
    from .synthetic.build import build_profile_grid

    try:
        path = build_profile_grid(get_profile(args.profile), workers=args.workers,
                                  scheduler=args.scheduler)
    except KeyboardInterrupt as stop:
        print(f"\n{str(stop) or 'synthesis interrupted'}", file=sys.stderr)
        return 130
    print(f"grid: {path}")
    print(f"manifest: {path}.manifest.json")
    return 0


def _run(args) -> int:
    from .pipeline import NotebookFailed, run_all

    try:
        run_all(get_profile(args.profile), start=args.start, update_notebooks=args.update_notebooks)
    except NotebookFailed as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def _format_predictions(rows, fmt: str, covariance: str) -> str:
    import csv
    import io
    import json

    from .labels import LABEL_NAMES, LABEL_UNITS

    if fmt == "json":
        return json.dumps([{
            "file": r["path"], "rv_kms": r["rv_kms"], "gap_fraction": r["gap_fraction"],
            **{n: {"value": float(m), "sigma": float(s), "unit": u}
               for n, m, s, u in zip(LABEL_NAMES, r["mean"], r["sigma"], LABEL_UNITS)},
            **({"correlation": r["correlation"].round(4).tolist()} if covariance == "full" else {}),
        } for r in rows], indent=1)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["file", "rv_kms", "gap_fraction",
                         *[c for n in LABEL_NAMES for c in (n, f"{n}_sigma")]])
        for r in rows:
            writer.writerow([r["path"], f"{r['rv_kms']:.3f}", f"{r['gap_fraction']:.4f}",
                             *[f"{v:.5g}" for m, s in zip(r["mean"], r["sigma"]) for v in (m, s)]])
        return buffer.getvalue().rstrip("\n")
    lines = []
    for r in rows:
        lines.append(f"{r['path']}  (rv {r['rv_kms']:+.2f} km/s, {100 * r['gap_fraction']:.1f} % filled)")
        for n, m, s, u in zip(LABEL_NAMES, r["mean"], r["sigma"], LABEL_UNITS):
            lines.append(f"  {n:6s} {m:10.3f} ± {s:8.3f} {u}")
        if covariance == "full":
            lines.append("  correlations: " + "  ".join(
                f"{LABEL_NAMES[i]}-{LABEL_NAMES[j]} {r['correlation'][i, j]:+.2f}"
                for i in range(4) for j in range(i + 1, 4)))
    return "\n".join(lines)


def _predict(args) -> int:
    from .experiments import load_variant
    from .predict import predict_files
    from .synthetic.grid import load_grid
    from .training.variants import parse_variant

    profile = get_profile(args.profile)
    model = load_variant(profile, args.model, args.models_dir)
    grid = load_grid(profile)
    rows = predict_files(args.files, model, grid, progress=len(args.files) > 1)
    print(_format_predictions(rows, args.format, parse_variant(args.model).covariance))
    return 0


def _report(args) -> int:
    from .report import update_readme

    changed = update_readme(get_profile(args.profile))
    print(f"README.md results block for {args.profile}: {'updated' if changed else 'unchanged'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paper_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="build the synthetic grid of a profile (resumable)")
    synth.add_argument("--profile", default="smoke", help="smoke, cpu or paper")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--scheduler", default=None,
                       help="'local' (default: processes here) or a Dask scheduler address, "
                            "e.g. tcp://HOST:8786 (needs pip install 'paper_lib[cluster]')")
    synth.set_defaults(func=_synth)
    run = sub.add_parser("run", help="run the notebooks in order with papermill")
    run.add_argument("--profile", default="smoke", help="smoke (default), cpu or paper")
    run.add_argument("--from", dest="start", default=None, help="first notebook, e.g. 03")
    run.add_argument("--update-notebooks", action="store_true",
                     help="store executed smoke notebooks as notebooks/*.ipynb")
    run.set_defaults(func=_run)
    predict = sub.add_parser("predict", help="Teff, log g, [M/H], v sin i ± σ of real spectra")
    predict.add_argument("files", nargs="+", help="HARPS-N/HARPS e2ds or s1d FITS, or 2-column text")
    predict.add_argument("--model", default="resnet_diagonal",
                         help="trained variant, e.g. attention_diagonal_dae (default resnet_diagonal)")
    predict.add_argument("--profile", default="cpu", help="whose models and grid (default cpu)")
    predict.add_argument("--models-dir", default=None, help="default models/<profile>/")
    predict.add_argument("--format", choices=("table", "json", "csv"), default="table")
    predict.set_defaults(func=_predict)
    report = sub.add_parser("report", help="rewrite README.md's results block from results/<profile>/")
    report.add_argument("--profile", default="cpu")
    report.set_defaults(func=_report)
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
