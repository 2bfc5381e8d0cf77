"""Subcommands of ``python -m paper_lib`` beyond the core ones of :mod:`paper_lib.cli`: the
models made from real stars and from the grid (``benchmark-calibrate``, ``emulator``,
``line-mask``), each a parser and its
function, so that ``cli.py`` stays one screen per subcommand group."""

from __future__ import annotations


def _benchmark_calibrate(args) -> int:
    from .evaluation.benchmark_report import star_table_markdown, variant_table_markdown
    from .evaluation.benchmark_stars import benchmark_set, calibrate_on_benchmarks
    from .predict import DEFAULT_MODEL

    spectra = benchmark_set(args.folder)
    results = {}
    for variant in args.variant or [DEFAULT_MODEL]:
        results[variant] = calibrate_on_benchmarks(
            variant, profile=args.profile, models_dir=args.models_dir, spectra=spectra,
            write=not args.dry_run, refine=args.refine)
        print(f"{variant}, per star (raw → calibrated with the star left out):\n"
              f"{star_table_markdown(results[variant]['raw'], results[variant]['loso'])}\n")
    print(f"Over the counted stars:\n{variant_table_markdown(results)}")
    if not args.dry_run:
        print(f"stored in {args.models_dir or 'models/' + args.profile}/label_calibration.json")
    return 0


def add_benchmark_parser(sub) -> None:
    """``benchmark-calibrate``: the label calibration against the benchmark stars."""
    calibrate = sub.add_parser("benchmark-calibrate", help="(re)make models/<profile>/"
                               "label_calibration.json: the labels calibrated against the "
                               "benchmark stars, judged leaving one star out")
    calibrate.add_argument("--profile", default="cpu")
    calibrate.add_argument("--models-dir", default=None, help="default models/<profile>/")
    calibrate.add_argument("--variant", action="append", default=[],
                           help="a variant to calibrate (repeatable; default predict's default)")
    calibrate.add_argument("--refine", action="store_true", help="calibrate the least-squares "
                           "fit's answers on the profile's emulator (predict --refine), stored "
                           "as <variant>+fit, instead of the network's")
    _add_benchmark_folder_options(calibrate)
    calibrate.set_defaults(func=_benchmark_calibrate)


def _add_benchmark_folder_options(parser) -> None:
    """``--folder`` (the benchmark set) and ``--dry-run``, of the commands fitted on it."""
    parser.add_argument("--folder", default=None, help="a benchmark folder: spectra and "
                        "references.csv (default: the shared data's benchmarks/, plus the Sun)")
    parser.add_argument("--dry-run", action="store_true", help="measure and print, store nothing")


def _emulator(args) -> int:
    from .profiles import get_profile
    from .synthetic.grid import Grid
    from .training.emulator import add_node_table, train_profile_emulator

    if args.grid and not args.models_dir:
        raise ValueError("emulator --grid: give --models-dir too (models/<profile>/ holds the "
                         "emulator of the profile's own grid)")
    grid = Grid.from_fits(args.grid) if args.grid else None
    if args.node_table_only:
        add_node_table(get_profile(args.profile), models_dir=args.models_dir, grid=grid)
    else:
        train_profile_emulator(get_profile(args.profile), steps=args.steps,
                               models_dir=args.models_dir, grid=grid)
    return 0


def add_emulator_parser(sub) -> None:
    """``emulator``: (re)train a profile's spectrum emulator, what ``predict --refine`` fits."""
    from .training.emulator import STEPS

    emulator = sub.add_parser("emulator", help="(re)make models/<profile>/emulator.pt: the spectrum "
                              "emulator predict --refine fits (needs the profile's grid; resumable)")
    emulator.add_argument("--profile", default="cpu")
    emulator.add_argument("--models-dir", default=None, help="default models/<profile>/")
    emulator.add_argument("--steps", type=int, default=STEPS, help=f"optimiser steps (default {STEPS})")
    emulator.add_argument("--grid", default=None, help="another grid FITS (e.g. the reference grid; "
                          "padded with continuum if narrower than the orders); needs --models-dir")
    emulator.add_argument("--node-table-only", action="store_true", help="only (re)make the node "
                          "table of the emulator already there (its MLP kept): seconds, not minutes")
    emulator.set_defaults(func=_emulator)


def _line_mask(args) -> int:
    from .evaluation.benchmark_stars import benchmark_set
    from .evaluation.line_mask import make_line_mask, write_line_mask
    from .profiles import get_profile

    profile = get_profile(args.profile)
    if profile.line_mask not in (None, profile.name):
        raise ValueError(f"profile {profile.name!r} trains with the line mask of profile "
                         f"{profile.line_mask!r}: make that one (--profile {profile.line_mask})")
    record = make_line_mask(profile, benchmark_set(args.folder), args.threshold)
    for fold, mask in record["folds"].items():
        print(f"{fold:18s} {len(mask['intervals']):4d} intervals, "
              f"{mask['masked_fraction']:.0%} of the pixels masked")
    if not args.dry_run:
        print(f"stored in {write_line_mask(record)}; retrain the _real variant "
              f"(./run_all.sh --profile {profile.name} --from 03)")
    return 0


def add_line_mask_parser(sub) -> None:
    """``line-mask``: the calibrator stars' line mask the ``_real`` variant never sees."""
    from .evaluation.line_mask import THRESHOLD

    mask = sub.add_parser("line-mask", help="(re)make models/<profile>/line_mask.json: the "
                          "pixels where the profile's emulator misses the Sun and Arcturus at "
                          "their reference labels, which the _real variant never sees")
    mask.add_argument("--profile", default="cpu")
    mask.add_argument("--threshold", type=float, default=THRESHOLD,
                      help=f"|real − model| above which a pixel is masked (default {THRESHOLD})")
    _add_benchmark_folder_options(mask)
    mask.set_defaults(func=_line_mask)
