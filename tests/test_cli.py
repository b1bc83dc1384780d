"""The ``ipchan`` command and the generated register map."""

import subprocess
import sys
from pathlib import Path

from ipchan.hw.regmap_doc import render
from ipchan.sw.cli import main

ROOT = Path(__file__).resolve().parent.parent


def test_regmap_doc_is_current():
    """docs/regmap.md is generated from hw/contract.py; regenerate with `make regmap`."""
    assert (ROOT / "docs" / "regmap.md").read_text() == render(), \
        "docs/regmap.md is stale: run `ipchan regmap --output docs/regmap.md`"


def test_regmap_check(tmp_path, capsys):
    out = tmp_path / "regmap.md"
    assert main(["regmap", "--output", str(out)]) == 0
    assert main(["regmap", "--output", str(out), "--check"]) == 0
    out.write_text("edited\n")
    assert main(["regmap", "--output", str(out), "--check"]) == 1
    assert "is stale" in capsys.readouterr().err


def test_help_lists_commands():
    result = subprocess.run([sys.executable, "-m", "ipchan.sw.cli", "--help"],
                            capture_output=True, text=True, check=True)
    for command in ("demo", "regmap"):
        assert command in result.stdout


def test_demo_on_model(capsys):
    assert main(["demo", "--backend", "model", "--entries", "8"]) == 0
    out = capsys.readouterr().out
    assert "version is now 1" in out
    assert "with generation 2 (it was 1)" in out
    assert "TableFullError" in out


def test_demo_rejects_bad_entries(capsys):
    try:
        main(["demo", "--backend", "model", "--entries", "12"])
    except SystemExit as exc:
        assert "Number of entries must be a power of two" in str(exc)
    else:
        raise AssertionError("--entries 12 was accepted")
