"""A wheel built from the repository carries the bundled zoo: installed in a fresh virtual
environment, ``rsrouter experts list`` and ``rsrouter certify`` on a bundled expert work outside
the checkout, and certify exactly as the checkout does.

Offline: the wheel is built with this environment's setuptools (no build isolation) and installed
without dependencies; the fresh environment reaches this one's third-party packages through a
``.pth`` line naming its site-packages (a directory line: that directory's own ``.pth`` files,
among them an editable install of rsrouter, are not run), so rsrouter comes from the wheel only.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import ROOT, certificates, subprocess_env

from rsrouter.cli import main

CERTIFY = ["certify", "--model", "digits-sigma0.25", "--dataset", "digits", "--n0", "20",
           "--n", "200", "--alpha", "0.01", "--skip", "90", "--max", "450", "--no-progress"]


def _run(*argv: str | Path, **kw) -> str:
    """Run a command; its stdout (the command's output in the failure message otherwise)."""
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _build_wheel(out: Path) -> Path:
    """The wheel of a copy of the checkout (the checkout itself gets no build/ folder)."""
    source = out / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    ignore = shutil.ignore_patterns("__pycache__", ".*", "*.egg-info")
    for name in ("rsrouter", "experts"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", source, "-w", out / "dist")
    [wheel] = (out / "dist").glob("rsrouter-*.whl")
    return wheel


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A new environment with ``wheel`` installed, seeing this one's third-party packages."""
    _run(sys.executable, "-m", "venv", "--without-pip", path)
    python = path / "bin" / "python"
    _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-index", "--disable-pip-version-check", wheel)
    purelib = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
                        env=subprocess_env()).strip())
    (purelib / "parent-environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return python


def test_the_wheel_carries_the_zoo_and_certifies_outside_the_checkout(tmp_path, monkeypatch):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    zoo = {f"rsrouter/zoo/{p.relative_to(ROOT / 'experts')}"
           for p in (ROOT / "experts").rglob("*") if p.is_file()}
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "rsrouter").rglob("*.py")}
    assert zoo | modules <= names, f"missing from the wheel: {sorted(zoo | modules - names)}"

    venv = tmp_path / "venv"
    python = _fresh_venv(venv, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = subprocess_env()
    where = _run(python, "-c", "import rsrouter.paths as p; print(p.__file__); print(p.ZOO)",
                 cwd=elsewhere, env=env).split()
    assert all(Path(w).is_relative_to(venv) for w in where), where
    assert where[1].endswith("rsrouter/zoo")

    rsrouter = venv / "bin" / "rsrouter"
    listing = _run(rsrouter, "experts", "list", cwd=elsewhere, env=env)
    for name in ("digits-sigma0.25", "fashion-mnist-sigma1.00", "fashion-mnist-denoised"):
        assert name in listing
    assert f"{where[1]}/registry.yaml (project)" in listing
    refused = subprocess.run([rsrouter, "experts", "register", str(ROOT / "experts" / "digits" /
                              "sigma-0.25"), "--name", "mine", "--project"], cwd=elsewhere,
                             env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "bundled zoo of an installed rsrouter" in refused.stderr

    summary = _run(rsrouter, *CERTIFY, "--out", "cert.tsv", cwd=elsewhere, env=env)
    assert "digits-sigma0.25" in summary and "ACR" in summary
    installed = certificates(elsewhere / "cert.tsv")
    assert list(installed["idx"]) == [0, 90, 180, 270, 360]

    monkeypatch.chdir(tmp_path)  # the same run from the checkout: the same certificates
    assert main([*CERTIFY, "--out", "checkout.tsv"]) == 0
    assert installed.equals(certificates(tmp_path / "checkout.tsv"))
