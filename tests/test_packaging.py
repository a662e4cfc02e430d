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
    # The venv sees this interpreter's packages (torch …) but not the source tree.
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
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
