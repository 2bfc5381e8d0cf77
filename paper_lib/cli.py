"""Command line: ``python -m paper_lib synth|run|predict|emulator|report ...`` (see ``--help``).

This is one of the two edges where a profile name is resolved (:func:`get_profile`; the other
is a notebook's ``profile`` parameter, :func:`paper_lib.notebook.start`).
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .profiles import get_profile

# how an error names what the user can give (paper_lib.observed.spectrum.FIXES): our options
CLI_OPTIONS = {"rv": "--rv KM_S", "wave": "--wave FILE", "blaze": "--blaze FILE", "fix": "--fix"}


def _synth_variant(args) -> int:
    """``synth --variant NAME``: the variant's spectra at the profile's grid nodes, or at the
    Sun's labels for a variant with a model of the Sun only (node files)."""
    from .synthetic.atmospheres import SOLAR_MODEL_NODE
    from .synthetic.build import profile_nodes
    from .synthetic.pool import default_workers
    from .synthetic.variants import build_variant_nodes, get_variant, variant_node_dir

    variant = get_variant(args.variant)
    if args.scheduler not in (None, "local"):
        raise ValueError("synth --variant runs on local processes only (no --scheduler)")
    nodes = ([SOLAR_MODEL_NODE] if variant.solar_only
             else profile_nodes(get_profile(args.profile).grid_nodes)[0])
    found = build_variant_nodes(variant, nodes, workers=default_workers(args.workers))
    print(f"physics variant {variant.name}: {len(found)} node files in {variant_node_dir(variant)}")
    return 0


def _synth(args) -> int:
    from .synthetic.build import build_profile_grid

    try:
        if args.variant:
            return _synth_variant(args)
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


def _predict(args) -> int:
    """Predict every input; failures on stderr, results of the good files always written."""
    from .fileio import atomic_write_bytes
    from .predict import DEFAULT_MODEL, Predictor, expand_inputs, predict_rows
    from .predict.formatting import render

    fmt = args.format or _format_of(args.output)
    if args.output:
        check_output(args.output)
    predictor = Predictor.load(args.model or DEFAULT_MODEL, args.profile, args.models_dir)
    items = expand_inputs(args.inputs)
    if not items:
        raise ValueError("no spectrum files found in " + ", ".join(args.inputs))
    try:
        rows = predict_rows(items, predictor, rv=args.rv, wave_path=args.wave,
                            blaze_path=args.blaze, options=CLI_OPTIONS,
                            vacuum=True if args.vacuum else None, workers=args.workers,
                            fix=args.fix, refine=args.refine, grid=args.grid,
                            calibrate=not args.no_calibration, models_dir=args.models_dir)
    except KeyboardInterrupt:
        print("\npredict interrupted: nothing written", file=sys.stderr)
        return 130
    failed = [r for r in rows if r.get("error") is not None]
    for row in failed:
        message = row["error"] if row["error"].startswith(row["file"]) else f"{row['file']}: {row['error']}"
        print(f"error: {message}", file=sys.stderr)
    text = render(rows, fmt)
    if args.output:
        try:
            atomic_write_bytes(args.output, (text + "\n").encode())
        except OSError as error:  # the results are not lost: they go to stdout
            print(f"error: --output {args.output}: cannot write it ({error.strerror or error}); "
                  "the results follow on stdout", file=sys.stderr)
            print(text)
            return 2
        print(f"{len(rows) - len(failed)} of {len(rows)} spectra predicted → {args.output}",
              file=sys.stderr)
    else:
        print(text)
    return 1 if failed else 0


def check_output(output) -> None:
    """ValueError naming ``--output`` unless a file can be written there now: not a folder,
    in an existing folder where a file can be created (tried with an empty temporary file,
    removed at once), not an existing file that cannot be replaced."""
    import os
    import tempfile
    from pathlib import Path

    path = Path(output)
    if str(output).endswith(os.sep) or path.is_dir():
        raise ValueError(f"--output {output}: is a folder; give a file in it, e.g. "
                         f"{path / 'results.csv'}")
    folder = path.parent
    if not folder.is_dir():
        raise ValueError(f"--output {output}: the folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".check"):
            pass
    except OSError as error:
        raise ValueError(f"--output {output}: cannot write in {folder} "
                         f"({error.strerror or error})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--output {output}: the file exists and cannot be replaced")


def _format_of(output) -> str:
    """The format an --output file's extension asks for (table without --output)."""
    if output is None:
        return "table"
    suffix = str(output).lower().rsplit(".", 1)[-1]
    if suffix not in ("json", "csv", "txt"):
        raise ValueError(f"--output {output}: give a .json, .csv or .txt file (or --format)")
    return {"txt": "table"}.get(suffix, suffix)


def _systematics(args) -> int:
    from .systematic_runs import run_systematics, stamp_systematics_weights

    if args.stamp_weights:
        from . import paths

        folder = args.models_dir or paths.models / get_profile(args.profile).name
        path, stamped = stamp_systematics_weights(folder)
        print(f"systematics: {path}: weights' SHA-256 added for {len(stamped)} models"
              + (f" ({', '.join(stamped)})" if stamped else " (all had it)"))
        return 0
    try:
        path = run_systematics(get_profile(args.profile), out_dir=args.models_dir,
                               workers=args.workers)
    except KeyboardInterrupt:
        print("\nsystematics interrupted: finished variant nodes are kept; run again to resume",
              file=sys.stderr)
        return 130
    print(f"systematics: {path}")
    return 0


def _ood_calibrate(args) -> int:
    from .experiments import ensure_ood_calibration
    from .synthetic.grid import Grid, load_grid

    profile = get_profile(args.profile)
    if args.grid:
        grid, extra = Grid.from_fits(args.grid), {"pad_with_continuum": True, "cache": False}
    else:
        grid, extra = load_grid(profile), {}
    path = ensure_ood_calibration(profile, grid, args.models_dir, n=args.n, force=True,
                                  source=args.grid and f"grid {args.grid}", **extra)
    print(f"OOD calibration: {path}")
    return 0


def _sigma_calibrate(args) -> int:
    from .evaluation.sigma_calibration import calibration_markdown, coverage_summary_markdown
    from .experiments import ensure_sigma_calibration
    from .synthetic.grid import load_grid

    profile = get_profile(args.profile)
    records = ensure_sigma_calibration(profile, load_grid(profile), args.variant or None,
                                       args.models_dir, force=True)
    for variant, record in records.items():
        print(f"σ calibration of {variant} (test coverage in %, raw → calibrated; Gaussian: "
              f"68.3 / 95.4):\n{calibration_markdown(record)}")
    if len(records) > 1:
        print(f"Test coverage within ±1σ, all labels pooled, raw → calibrated (%):\n"
              f"{coverage_summary_markdown(records)}")
    return 0


def _rv_template(args) -> int:
    from .observed.template import TEMPLATE_FILE, write_template
    from .synthetic.build import default_grid_file
    from .synthetic.grid import load_grid

    profile = get_profile(args.profile)
    record = write_template(load_grid(profile), default_grid_file(profile.grid_nodes).name)
    print(f"{TEMPLATE_FILE}: node {record['node']}, physics {record['physics_id']}")
    return 0


def _report(args) -> int:
    from .report import PAGES, update_pages

    changed = update_pages(get_profile(args.profile))
    for name in PAGES:
        print(f"{name} results block for {args.profile}: "
              f"{'updated' if name in changed else 'unchanged'}")
    return 0


def _add_synth(sub) -> None:
    synth = sub.add_parser("synth", help="build the synthetic grid of a profile (resumable)")
    synth.add_argument("--profile", default="smoke", help="smoke, cpu or paper")
    synth.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    synth.add_argument("--scheduler", default=None,
                       help="'local' (default: processes here) or a Dask scheduler address, "
                            "e.g. tcp://HOST:8786 (needs pip install 'paper_lib[cluster]')")
    synth.add_argument("--variant", default=None,
                       help="a physics variant's spectra at the grid's nodes instead (node files "
                            "in the cache, resumable; e.g. vdw_list, the listed van der Waals γ₆; "
                            "sun_mean3d and sun_marcs1d: the Sun's labels only)")
    synth.set_defaults(func=_synth)


def _add_run(sub) -> None:
    run = sub.add_parser("run", help="run the notebooks in order with papermill")
    run.add_argument("--profile", default="smoke", help="smoke (default), cpu or paper")
    run.add_argument("--from", dest="start", default=None, help="first notebook, e.g. 03")
    run.add_argument("--update-notebooks", action="store_true",
                     help="store executed smoke notebooks as notebooks/*.ipynb")
    run.set_defaults(func=_run)


def _add_predict(sub) -> None:
    predict = sub.add_parser("predict", help="Teff, log g, [M/H], v sin i ± σ of real spectra, "
                             "with quality flags")
    predict.add_argument("inputs", nargs="+", help="HARPS-N/HARPS e2ds or s1d FITS, 2-column "
                         "text, folders of them, or glob patterns")
    predict.add_argument("--model", default=None, help="trained variant, e.g. "
                         "attention_diagonal_dae (default: paper_lib.predict.DEFAULT_MODEL)")
    predict.add_argument("--profile", default=None,
                         help="whose models (default: paper_lib.predict.DEFAULT_PROFILE, cpu; "
                              "with --models-dir: the profile its weights were trained with)")
    predict.add_argument("--models-dir", default=None, help="default models/<profile>/")
    predict.add_argument("--rv", type=_finite_kms, default=None,
                         help="known radial velocity [km/s] of every input (default: measured; "
                              "a given one is checked against the spectrum's CCF)")
    predict.add_argument("--wave", default=None, metavar="FILE",
                         help="the wavelength frame (_wave_A) of e2ds inputs whose header gives "
                              "none (default: the header's polynomial or the file it names)")
    predict.add_argument("--blaze", default=None, metavar="FILE",
                         help="the blaze frame (_blaze_A) of e2ds inputs (default: the file the "
                              "header names, beside the input)")
    predict.add_argument("--vacuum", action="store_true",
                         help="the wavelengths are in vacuum (default: as the header says, else air)")
    predict.add_argument("--format", choices=("table", "json", "csv"), default=None,
                         help="default: from --output's extension, else table")
    predict.add_argument("--output", default=None, help="write the results to a .csv/.json/.txt "
                         "file (checked before the run; if writing fails, they go to stdout)")
    predict.add_argument("--workers", type=int, default=2, help="processes preparing the files "
                         "(default 2; threads below 16 files)")
    predict.add_argument("--fix", action="append", default=None, metavar="LABEL=VALUE±SIGMA",
                         help="a label known from elsewhere, e.g. logg=4.44±0.05 (also +-); "
                              "repeatable; teff, logg, mh or vsini (also Teff, log g, [Fe/H]; "
                              "a − minus is read as -)")
    predict.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                         help="fit every star by least squares from the network's answer, on the "
                              "shipped emulator (models/<profile>/emulator.pt), or on --grid; "
                              "--no-refine: the network's answer (default: "
                              "paper_lib.predict.FIT_BY_DEFAULT, off)")
    predict.add_argument("--grid", default=None, help="grid FITS for --refine (~5 s a star)")
    predict.add_argument("--no-calibration", action="store_true",
                         help="report the raw answer, without the label calibration against "
                              "the benchmark stars (label_calibration.json beside the weights)")
    predict.set_defaults(func=_predict)


def _add_calibrations(sub) -> None:
    systematics = sub.add_parser("systematics", help="(re)make models/<profile>/systematics.json: "
                                 "answer shifts under other published physics")
    systematics.add_argument("--profile", default="cpu")
    systematics.add_argument("--models-dir", default=None, help="default models/<profile>/")
    systematics.add_argument("--workers", type=int, default=2, help="synthesis processes")
    systematics.add_argument("--stamp-weights", action="store_true",
                             help="only add the weights' SHA-256 to a file made before it was "
                                  "recorded (from the commit it names; no synthesis)")
    systematics.set_defaults(func=_systematics)
    calibrate = sub.add_parser("ood-calibrate", help="(re)make models/<profile>/ood_calibration.json "
                               "from synthetic test spectra")
    calibrate.add_argument("--profile", default="cpu")
    calibrate.add_argument("--models-dir", default=None, help="default models/<profile>/")
    calibrate.add_argument("--grid", default=None, help="another grid FITS (e.g. the reference grid), "
                           "padded with continuum to the orders")
    calibrate.add_argument("-n", type=int, default=1000, help="spectra per SNR (default 1000)")
    calibrate.set_defaults(func=_ood_calibrate)
    sigma = sub.add_parser("sigma-calibrate", help="(re)make models/<profile>/sigma_calibration"
                           ".json: the networks' σ against SNR, from synthetic spectra")
    sigma.add_argument("--profile", default="cpu")
    sigma.add_argument("--models-dir", default=None, help="default models/<profile>/")
    sigma.add_argument("--variant", action="append", default=[],
                       help="a variant to calibrate (repeatable; default the _real one)")
    sigma.set_defaults(func=_sigma_calibrate)


def _add_upkeep(sub) -> None:
    from .commands import add_benchmark_parser, add_emulator_parser, add_line_mask_parser

    template = sub.add_parser("rv-template", help="remake the shipped radial-velocity template "
                              "(paper_lib/data/rv_template.npz) from a profile's grid")
    template.add_argument("--profile", default="smoke", help="a grid with the solar-like node")
    template.set_defaults(func=_rv_template)
    add_benchmark_parser(sub)
    add_emulator_parser(sub)
    add_line_mask_parser(sub)
    report = sub.add_parser("report", help="rewrite the results blocks of README.md and "
                            "docs/results.md from results/<profile>/")
    report.add_argument("--profile", default="cpu")
    report.set_defaults(func=_report)


def _finite_kms(text: str) -> float:
    """``--rv``'s value: a finite number of km/s (a Unicode minus accepted)."""
    try:
        value = float(str(text).replace("\u2212", "-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of km/s") from None
    if not abs(value) < 3e5:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite velocity below c, in km/s")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m paper_lib", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_run, _add_predict, _add_calibrations, _add_upkeep):
        add(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``warning: <message>``, without the source line Python adds."""
    from .notebook import one_line_warning

    print(one_line_warning(message, category, filename, lineno), end="", file=file or sys.stderr)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # e.g. a read-only cache or output folder
        where = f" ({error.filename})" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before a command's own handling (loading models, …)
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
