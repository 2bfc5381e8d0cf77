"""Where log g is lost on the benchmark stars (issue 31, part 6): the network's raw answer beside
a least-squares fit of the grid (all labels free, from the network's answer) and the log g that
the pixels want with Teff and [M/H] held at the reference — over the whole window and over the
Mg b wings alone (:mod:`paper_lib.evaluation.logg_diagnosis`). Prints a Markdown table.

    python benchmarks/logg_diagnosis.py [--profile cpu] [--model resnet_diagonal_real]

Needs the profile's grid (python -m paper_lib synth --profile cpu) and the benchmark data.
Nothing is fitted to the stars: this only measures.
"""

from __future__ import annotations

import argparse
import json
import time

from paper_lib.evaluation.benchmark_stars import benchmark_set
from paper_lib.evaluation.logg_diagnosis import diagnose, diagnosis_markdown
from paper_lib.profiles import get_profile
from paper_lib.provenance import git_commit
from paper_lib.synthetic.grid import load_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--model", default=None, help="default: predict's default")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    started = time.time()
    rows = diagnose(benchmark_set(), load_grid(get_profile(args.profile)), args.model, args.profile)
    print(diagnosis_markdown(rows))
    for row in rows:
        for note in row["notes"]:
            print(f"note: {row['file']}: {note}")
    commit = git_commit()
    print(f"\nprofile {args.profile}, commit {commit['commit'][:10]}"
          f"{' (dirty)' if commit['dirty'] else ''}, {time.time() - started:.0f} s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "commit": commit}, handle, indent=1, default=float)


if __name__ == "__main__":
    main()
