"""The wheel ships the static completion scripts, and `tether completion SHELL` reads them from it.

The wheel is built from this checkout with pip (hatchling, as pyproject.toml
says), listed, and unpacked; the unpacked package, first on PYTHONPATH, must
print the scripts without the source tree's completions/ anywhere near it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.cli import tether_env

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"bash": "tether.bash", "zsh": "_tether", "fish": "tether.fish"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                           "--wheel-dir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (built,) = out.glob("tether-*.whl")
    return built


def test_the_wheel_holds_every_completion_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in SCRIPTS.values():
            assert f"tether/completions/{name}" in names
            shipped = archive.read(f"tether/completions/{name}")
            assert shipped == (ROOT / "completions" / name).read_bytes(), name
    assert "tether/cli/commands/completion.py" in names


def test_completion_prints_the_wheels_scripts(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    env = tether_env(None, None, tmp_path)
    env["PYTHONPATH"] = str(unpacked)
    where = subprocess.run([sys.executable, "-c", "import tether; print(tether.__file__)"],
                           env=env, capture_output=True, text=True, timeout=30, check=False)
    assert where.stdout.strip() == str(unpacked / "tether" / "__init__.py")
    for shell, name in SCRIPTS.items():
        proc = subprocess.run([sys.executable, "-m", "tether", "completion", shell], env=env,
                              capture_output=True, timeout=30, check=False, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == (unpacked / "tether" / "completions" / name).read_bytes()
    # what a source checkout would offer instead is not there: the wheel's copy was read
    assert not (tmp_path / "completions").exists()
