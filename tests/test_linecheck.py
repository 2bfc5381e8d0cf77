"""The Gaia-ESO lines left out because they contradict VALD3 (paper_lib.synthetic.linecheck)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from paper_lib.synthetic.linecheck import (CONFLICT_EW_MA, EW_HALF_WINDOW_A, HFS_SPREAD_A,
                                           checked_gaia_eso, dropped_lines, has_counterpart,
                                           sparse_subsets, vald_counterpart_missing)
from paper_lib.synthetic.linelists import read_turbospectrum_blocks

# real records: the spurious Fe I line (Gaia-ESO only) and the Fe I line both lists hold; a weak
# made-up Fe I line
SPURIOUS = ("  5245.626  4.313 -0.567   -7.510   13.0  2.00E+08  'p' 'd'   0.0    1.0 "
            "'Fe I z5G* e3H'\n")
WEAK = "  5247.900  4.500 -4.000   -7.510    7.0  1.00E+08  'p' 'd'   0.0    1.0 'Fe I weak'\n"
SHARED = ("  5250.209  0.121 -4.933  207.253    3.0  1.66E+03  's' 'p'   0.0    1.0 "
          "'Fe I a5D z7D*'\n")


def _write_list(path, blocks):
    text = "".join(f"'{species:8.3f}            '    {ion}  {len(lines):9d}\n'{name}'\n"
                   + "".join(lines) for species, ion, name, lines in blocks)
    path.write_text(text)
    return path


def test_sparse_subsets_keep_lines_apart_and_use_each_once():
    rng = np.random.default_rng(1)
    waves = np.sort(rng.uniform(5000.0, 5010.0, 200))
    subsets = sparse_subsets(waves, 1.0)
    assert sorted(i for s in subsets for i in s) == list(range(200))
    for subset in subsets:
        assert np.all(np.diff(np.sort(waves[subset])) >= 1.0)
    assert len(subsets) <= 40  # ~20 lines per Å here: greedy packing stays near that density


def test_counterpart_is_the_same_line_or_a_hyperfine_component():
    vald = np.array([[5105.543, 1.389], [5300.000, 2.000]])
    assert has_counterpart(vald, 5105.550, 3.0)  # within SAME_LINE_A: the same line
    assert has_counterpart(vald, 5105.564 + 0.1, 1.389)  # same level, within HFS_SPREAD_A
    assert not has_counterpart(vald, 5105.543 + HFS_SPREAD_A + 0.05, 1.389)
    assert not has_counterpart(vald, 5105.643, 2.5)  # another level 0.1 Å away: another line
    assert not has_counterpart(np.empty((0, 2)), 5105.543, 1.389)


@pytest.mark.slow
def test_line_in_conflict_with_vald_is_dropped(tmp_path, private_cache):
    """Turbospectrum makes the Gaia-ESO-only Fe I 5245.626 Å line strong in the solar model:
    dropped. The weak Gaia-ESO-only line and the line VALD3 also holds stay."""
    gaia_eso = _write_list(tmp_path / "ges.txt", [(26.0, 1, "Fe I", [SPURIOUS, WEAK, SHARED])])
    vald = _write_list(tmp_path / "vald.txt", [(26.0, 1, "Fe I", [SHARED])])
    assert [w for _, w, _ in vald_counterpart_missing(gaia_eso, vald)] == [5245.626, 5247.9]
    checked = checked_gaia_eso((5244.0, 5252.0), 0.0, vald=vald, gaia_eso=gaia_eso,
                               out_dir=tmp_path, progress=False)
    record = json.loads(checked.with_suffix(".json").read_text())
    assert [d["wave_A"] for d in record["dropped"]] == [5245.626]
    assert record["dropped"][0]["ew_mA"] > 50.0  # ~90 mÅ: a strong line
    kept = [float(r.split()[0]) for _, _, body in read_turbospectrum_blocks(checked) for r in body]
    assert kept == [5247.9, 5250.209]
    assert checked_gaia_eso((5244.0, 5252.0), 0.0, vald=vald, gaia_eso=gaia_eso,
                            out_dir=tmp_path) == checked  # cached


@pytest.mark.slow
def test_subset_widths_are_those_of_each_line_alone(tmp_path, private_cache):
    """Two lines 1.2 Å apart share a subset; each one's EW equals its EW synthesised alone."""
    from paper_lib.synthetic.linecheck import equivalent_widths_mA

    other = "  5247.000  2.200 -2.000   -7.510    7.0  1.00E+08  'p' 'd'   0.0    1.0 'Fe I b'\n"
    header = ("'  26.000            '    1  1\n", "'Fe I'\n")
    both = [((26, 1), 5245.626, SPURIOUS), ((26, 1), 5247.0, other)]
    together = equivalent_widths_mA(both, {(26, 1): header}, (5243.0, 5250.0), tmp_path / "a",
                                    progress=False)
    alone = [equivalent_widths_mA([line], {(26, 1): header}, (5243.0, 5250.0),
                                  tmp_path / f"b{i}", progress=False)[0]
             for i, line in enumerate(both)]
    np.testing.assert_allclose(together, alone, rtol=0.01)
    assert EW_HALF_WINDOW_A < 0.6  # the window holds one line, not its subset neighbour


@pytest.mark.slow
def test_real_lists_drop_spurious_lines_and_keep_hyperfine_components():
    """On the real lists (the sdist's Gaia-ESO, the shared VALD3 solar list) the check drops the
    strong Gaia-ESO-only Fe I lines and none of the components of lines VALD3 holds as one."""
    from paper_lib.synthetic.turbospectrum import WAVE_RANGE

    from .conftest import shared_or_skip

    shared_or_skip("linelists/VALD3_sun_masterlist_4948_9000_no_molecules.txt")
    dropped = {(tuple(d["species"]), d["wave_A"]): d["ew_mA"] for d in dropped_lines(WAVE_RANGE)}
    assert ((26, 1), 5245.626) in dropped and ((26, 1), 5259.094) in dropped
    assert all(ew >= CONFLICT_EW_MA for ew in dropped.values())
    assert not any(species == (29, 1) and abs(wave - 5105.54) < 0.1  # Cu I 5105.5 hfs
                   or species == (25, 1) and abs(wave - 5407.42) < 0.15  # Mn I 5407.4 hfs
                   for species, wave in dropped)
    assert 30 <= len(dropped) <= 100
