"""One distribution, ``ipchan``: the same import names from the editable install and a wheel."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = {"hw": "ipchan/hw", "sw": "ipchan/sw", "sim": "ipchan/sim", "boards": "ipchan/boards"}


def _source_modules():
    mods = set()
    for src, dest in SOURCE_DIRS.items():
        for path in (ROOT / src).rglob("*.py"):
            if "__pycache__" not in path.parts:
                mods.add(f"{dest}/{path.relative_to(ROOT / src).as_posix()}")
    return mods


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    # Build from a clean copy: setuptools reuses build/lib, where stale modules would hide a
    # package missing from pyproject.toml.
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in SOURCE_DIRS:
        shutil.copytree(ROOT / folder, src / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                    "--no-build-isolation", "-w", str(out), str(src)], check=True)
    (path,) = out.glob("ipchan-*.whl")
    return path


def test_wheel_holds_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_source_modules() - names)
    assert not missing, f"modules missing from the wheel (add their package to pyproject.toml): {missing}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ipchan = ipchan.sw.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_wheel_imports_like_editable(wheel, tmp_path):
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # -S: no site processing, so the editable install's finder is not there; the venv's
    # site-packages still provides the dependencies.
    code = (
        "import sys; sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
        "import ipchan.hw.contract, ipchan.sw.driver, ipchan.sim.build, ipchan.boards\n"
        "from ipchan.sw.driver import Engine\n"
        "assert ipchan.hw.contract.__file__.startswith(sys.argv[1]), ipchan.hw.contract.__file__\n"
        "e = Engine.for_model(); e.install(__import__('ipchan.sw.driver').sw.driver.SaConfig("
        "spi=0x1000, direction='inbound', mode='transport', algorithm='aes-gcm-16', key=bytes(20)));"
        " print(e.commit())\n"
    )
    result = subprocess.run([sys.executable, "-S", "-c", code, str(unpacked),
                             sysconfig.get_paths()["purelib"]],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


def test_editable_install_maps_folders():
    import ipchan.boards
    import ipchan.hw
    import ipchan.sim
    import ipchan.sw
    for module, folder in ((ipchan.hw, "hw"), (ipchan.sw, "sw"), (ipchan.sim, "sim"),
                           (ipchan.boards, "boards")):
        assert Path(module.__file__).resolve().parent == ROOT / folder
