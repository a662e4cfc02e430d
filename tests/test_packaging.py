"""The built wheel works on its own: zoo/ is installed as archscope.zoo."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_summarises_vgg16_from_another_directory(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = dist.glob("archscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "archscope/zoo/vgg.py" in names and "archscope/py.typed" in names
    assert not any(n.startswith("zoo/") for n in names), "no top-level 'zoo' package"

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    _see_this_interpreters_packages(python)
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q",
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(env_dir / "bin" / "archscope"), "summary", "vgg16"], cwd=work,
                            capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    assert "138,357,544" in result.stdout
    where = subprocess.run([str(python), "-c", "import archscope.zoo, sys; print(archscope.zoo.__file__)"],
                           cwd=work, capture_output=True, text=True, env=env, check=True).stdout
    assert str(env_dir) in where, where


def _see_this_interpreters_packages(python: Path) -> None:
    """Let the new venv import the packages this interpreter has (torch …), whatever this
    interpreter is (the system Python, a venv, a venv over system packages), but not the source
    tree or an editable install of it.

    The site-packages directories on this interpreter's ``sys.path`` are listed as plain lines
    in a ``.pth`` file: a plain line only appends the directory, it does not run the ``.pth``
    files there, so an editable install's import hook is not installed in the new venv.
    ``venv(system_site_packages=True)`` would see the *base* interpreter's packages instead,
    which lack torch when the tests run inside a venv.
    """
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if Path(p).name in {"site-packages", "dist-packages"}]
    Path(purelib, "_archscope_test_outer_site.pth").write_text("\n".join(ours) + "\n")


def test_every_package_is_listed_for_the_wheel() -> None:
    """pyproject.toml lists packages explicitly (archscope.zoo lives in zoo/): a new package
    directory that is not listed would be missing from the wheel."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    (packages,) = re.findall(r"^packages = \[(.*?)\]", text, flags=re.M | re.S)
    listed = set(re.findall(r'"([\w.]+)"', packages))
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for init in (ROOT / "archscope").rglob("__init__.py")}
    assert found | {"archscope.zoo"} == listed
