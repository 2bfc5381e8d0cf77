"""Turbospectrum synthesis: real nodes against the reference grid, resumable builds, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from astropy.io import fits

from paper_lib.synthetic.grid import Grid
from paper_lib.synthetic.atmospheres import NodeNotInAtmosphereGrid, node_key
from paper_lib.synthetic.build import build_grid, load_node_file, node_file, profile_nodes
from paper_lib.synthetic.installed import TurbospectrumNotFound
from paper_lib.synthetic.linelists import trimmed_gaia_eso
from paper_lib.synthetic.turbospectrum import physics_id, synthesize_node


NARROW = (5160.0, 5190.0)  # Mg b: fast builds for the resume tests
REAL_NODES = [(5750.0, 4.5, 0.0), (9500.0, 4.0, 0.0), (4000.0, 1.0, -2.0)]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("node", REAL_NODES, ids=lambda n: node_key(*n))
def test_node_matches_reference_grid(node, reference_grid):
    """Our Turbospectrum driver reproduces the reference grid with its physics (PHYSICS_VERSION 1:
    v_micro 2 km/s, Gaia-ESO atoms only)."""
    wave, flux = synthesize_node(*node, vmicro=2.0, molecules=False, supplement=False,
                                 checked=False)
    assert wave[0] == pytest.approx(5020.0) and wave[-1] == pytest.approx(5400.0)
    assert wave.size == 38001 and np.all(np.diff(wave) > 0)
    in_range = (reference_grid.wavelength >= 5050) & (reference_grid.wavelength <= 5350)
    ours = np.interp(reference_grid.wavelength[in_range], wave, flux)
    theirs = reference_grid.node_flux(*node)[in_range]
    assert np.max(np.abs(ours - theirs)) <= 1e-3
    assert flux.min() < 0.5 if node[0] < 9000 else flux.min() < 0.9  # real absorption lines


def _equivalent_width(flux, step=0.01):
    return float(np.sum(1.0 - flux) * step)  # Å


def test_vmicro_reaches_turbospectrum(private_cache):
    """Saturated lines grow with microturbulence: the wrapper's synthesize() ignored v_micro."""
    widths = [_equivalent_width(synthesize_node(5750.0, 4.5, 0.0, wave_range=NARROW, vmicro=v,
                                                molecules=False)[1]) for v in (0.5, 1.0, 2.0)]
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] / widths[0] > 1.05


def test_mgh_deepens_cool_dwarf(private_cache):
    """ExoMol MgH: strong bands in a 3500 K dwarf, next to nothing in a 9500 K star."""
    cool = [synthesize_node(3500.0, 5.0, 0.0, wave_range=NARROW, molecules=m)[1] for m in (False, True)]
    hot = [synthesize_node(9500.0, 4.0, 0.0, wave_range=NARROW, molecules=m)[1] for m in (False, True)]
    assert _equivalent_width(cool[1]) > 1.2 * _equivalent_width(cool[0])
    assert np.max(np.abs(hot[1] - hot[0])) < 1e-3


def test_unknown_node_is_refused():
    with pytest.raises(NodeNotInAtmosphereGrid, match="Teff=7000"):
        synthesize_node(7000.0, 0.0, 0.0)  # in the hot low-gravity hole
    with pytest.raises(NodeNotInAtmosphereGrid, match="Teff=5800"):
        synthesize_node(5800.0, 4.5, 0.0)  # not a node at all


def test_missing_binaries_give_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    with pytest.raises(TurbospectrumNotFound, match="apt-get install -y gfortran csh"):
        synthesize_node(5750.0, 4.5, 0.0)


def test_table1_has_231_absent_nodes():
    present, absent = profile_nodes("full")
    assert len(present) + len(absent) == 2002
    assert len(absent) == 231 and len(present) == 1771
    assert (7000.0, 0.0, 0.0) in absent and (9250.0, 1.5, 0.0) in absent
    assert (9250.0, 2.0, 0.0) in present


def _build(nodes, out, node_dir, workers=1):
    return build_grid(nodes, out, workers=workers, wave_range=NARROW,
                                node_dir=node_dir, progress=False)


def _flux(path):
    with fits.open(path) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    nodes = REAL_NODES[:2] + [(5500.0, 4.0, -0.5)]
    path = _build(nodes, root / "grid.fits", root / "nodes", workers=2)
    return nodes, path


def test_grid_file_and_manifest(uninterrupted):
    nodes, path = uninterrupted
    grid = Grid.from_fits(path)
    assert grid.flux.shape == (3, 3001)
    manifest = (path.parent / f"{path.name}.manifest.json").read_text()
    for key in ("sha256", "turbospectrum", "node_wall_time_s", "absent_nodes", "step_A"):
        assert key in manifest


def test_resume_after_killed_build(uninterrupted, tmp_path):
    nodes, reference = uninterrupted
    script = (
        "import sys; from pathlib import Path; from paper_lib.synthetic.build import build_grid\n"
        f"build_grid({nodes!r}, Path(sys.argv[1]), workers=1, wave_range={NARROW!r},"
        " node_dir=Path(sys.argv[2]), progress=False)\n"
    )
    node_dir = tmp_path / "nodes"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "grid.fits"),
                             str(node_dir)], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(node_dir.glob("t*.npy"))) < 1:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the build and its worker die mid-grid
    proc.wait()
    finished_before = len(list(node_dir.glob("t*.npy")))
    assert 1 <= finished_before < len(nodes), "the kill should land mid-grid"
    assert not (tmp_path / "grid.fits").exists()
    resumed = _build(nodes, tmp_path / "grid.fits", node_dir)
    np.testing.assert_array_equal(_flux(resumed), _flux(reference))


def test_corrupt_node_file_is_rebuilt(uninterrupted, tmp_path):
    nodes, reference = uninterrupted
    node_dir = tmp_path / "nodes"
    first = _build(nodes, tmp_path / "grid.fits", node_dir)
    victim = node_file(node_dir, nodes[0])
    victim.write_bytes(victim.read_bytes()[:500])  # truncated, as by a full disk
    assert load_node_file(victim, 3001) is None
    rebuilt = _build(nodes, tmp_path / "grid2.fits", node_dir)
    np.testing.assert_array_equal(_flux(rebuilt), _flux(first))
    assert load_node_file(victim, 3001) is not None


def test_linelist_trimming_keeps_margin(private_cache):
    path = trimmed_gaia_eso((5020.0, 5400.0))
    waves = [float(line.split()[0]) for line in path.read_text().splitlines()
             if not line.startswith("'")]
    assert min(waves) >= 5010.0 and max(waves) <= 5410.0
    assert 5000 < len(waves) < 20000
    assert min(waves) < 5015.0 and max(waves) > 5405.0  # the margin really is used


def test_vald_supplement_holds_only_lines_gaia_eso_lacks(private_cache):
    """The VALD3 lines added to Gaia-ESO: none within SAME_LINE_A of a Gaia-ESO line of the
    same element and ion, isotopic components merged into one block per species."""
    from paper_lib.synthetic.linelists import (SAME_LINE_A, atomic_species, line_wavelengths,
                                               read_turbospectrum_blocks, vald_supplement)

    wave_range = (5020.0, 5400.0)
    supplement = vald_supplement(wave_range)
    gaia_eso = line_wavelengths(trimmed_gaia_eso(wave_range))
    added = line_wavelengths(supplement)
    assert sum(len(w) for w in added.values()) == 36
    for key, waves in added.items():
        known = gaia_eso.get(key, np.empty(0))
        assert known.size == 0 or np.min(np.abs(known[:, None] - waves[None]), axis=0).min() >= SAME_LINE_A
        assert np.all((waves >= 5010.0) & (waves <= 5410.0))
    headers = [atomic_species(h) for h, _, body in read_turbospectrum_blocks(supplement) if body]
    assert len(headers) == len(set(headers))  # one block per element and ion


def test_physics_id_is_pinned():
    """Grids, node caches and their manifests are named by this hash of ``physics()``.

    Changing what a node's spectrum is made of (line lists, v_micro, abundances, …) must be a
    deliberate act: bump ``PHYSICS_VERSION`` and update the value here, so that grids of the old
    physics are never mixed with the new one. A refactoring must leave it unchanged.
    """
    assert physics_id() == "a757ee30ba"
