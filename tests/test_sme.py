"""The ``sme`` physics variant: our Turbospectrum line lists translated for SME, and SME's Sun."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from paper_lib.synthetic.sme import ISOTOPE_FRACTIONS, SMENotFound, require_pysme, sme_line_table

NARROW = (5160.0, 5190.0)  # Mg b, as the Turbospectrum tests use

LIST = """'  26.000            '    1         4
'Fe I'
 5172.684  0.087 -1.000  -7.510    5.0  2.40E+08  0.000  'p' 'd'   0.0    1.0 'a'
 5171.596  1.485 -1.721  350.230   5.0  1.00E+08 'p' 'd'   0.0    1.0 'b'
 5170.000  2.000 -2.000   2.500    5.0  0.00E+00 'p' 'd'   0.0    1.0 'c'
 5169.000  3.000 -3.000  -7.000    5.0  1.00E+05 'p' 'd'   0.0    1.0 'd'
'  29.063            '    1         1
'Cu I'
 5153.230  3.786  0.217  -7.200    4.0  1.00E+08 's' 'p'   0.0    1.0 'e'
'0112.001025'  1         1
'25MgH'
  5167.000  0.5000  -2.000 0.00   36.0 0.00E+00 'X' 'X'
"""


def test_line_table_translates_damping_isotopes_and_keeps_every_line(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text(LIST)
    table = sme_line_table([path])
    assert list(table["wlcent"]) == sorted(table["wlcent"]) and len(table["wlcent"]) == 6
    rows = {round(w, 3): i for i, w in enumerate(table["wlcent"])}
    fe, abo, unsold, weak = (rows[w] for w in (5172.684, 5171.596, 5170.0, 5169.0))
    assert table["species"][fe] == "Fe 1" and table["ionization"][fe] == 1.0
    assert table["gamvw"][fe] == -7.51 and table["gamvw"][abo] == 350.23
    assert table["gamvw"][unsold] == 0.0  # an Unsöld factor: SME's own estimate
    np.testing.assert_allclose(table["gamrad"][[fe, abo, unsold, weak]],
                               [np.log10(2.4e8), 8.0, 0.0, 5.0])
    assert np.all(table["gamqst"] == 0.0)
    assert table["gflog"][fe] == -1.0  # no isotope: log gf unchanged
    cu, mgh = rows[5153.23], rows[5167.0]
    assert table["species"][cu] == "Cu 1" and table["species"][mgh] == "MgH 1"
    np.testing.assert_allclose(table["gflog"][cu], 0.217 + np.log10(ISOTOPE_FRACTIONS[29, 63]))
    np.testing.assert_allclose(table["gflog"][mgh], -2.0 + np.log10(0.1))


def test_an_untranslatable_molecule_or_isotope_is_refused(tmp_path):
    path = tmp_path / "lines.txt"
    path.write_text("'0606.012012'  1  1\n'C2'\n 5165.0 0.1 -1.0 0.0 1.0 0.0 'X' 'X'\n")
    with pytest.raises(ValueError, match="no SME translation"):
        sme_line_table([path])
    path.write_text("'  26.056            '    1  1\n'Fe I'\n 5165.0 0.1 -1.0 0.0 1.0 0.0 'X' 'X'\n")
    with pytest.raises(ValueError, match="no solar fraction"):
        sme_line_table([path])


def test_without_pysme_the_error_says_how_to_install(monkeypatch, capsys):
    from paper_lib.cli import main

    monkeypatch.setitem(sys.modules, "pysme", None)
    with pytest.raises(SMENotFound, match=r"pip install 'pysme-astro"):
        require_pysme()
    assert main(["systematics", "--profile", "smoke"]) == 2  # before any synthesis
    assert "error: the 'sme' physics variant needs SME: pip install" in capsys.readouterr().err


@pytest.mark.slow
def test_sme_sun_is_close_to_but_not_the_turbospectrum_sun(private_cache, tmp_path, monkeypatch):
    """One SME and one Turbospectrum run of the Sun's node over Mg b, plus a metal-poor SME run."""
    pytest.importorskip("pysme")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    from paper_lib.synthetic.turbospectrum import synthesize_node
    from paper_lib.synthetic.variants import get_variant, synthesize_variant_node

    sme = get_variant("sme")
    wave, sun = synthesize_variant_node((5750.0, 4.5, 0.0), sme, wave_range=NARROW)
    ts_wave, turbospectrum = synthesize_node(5750.0, 4.5, 0.0, wave_range=NARROW)
    np.testing.assert_array_equal(wave, ts_wave)
    rms = np.sqrt(np.mean((sun - turbospectrum) ** 2))
    assert 1e-3 < rms < 0.05  # two codes, same inputs: close, not equal
    assert sun.min() < 0.2 and np.all((sun > 0) & (sun < 1.01))  # Mg b cores are deep
    _, poor = synthesize_variant_node((5750.0, 4.5, -1.0), sme, wave_range=NARROW)
    assert np.sum(1 - poor) < 0.8 * np.sum(1 - sun)  # [M/H] reaches SME's abundances
    assert list(here.iterdir()) == []  # SME's syntherr.log stays in its work folder
