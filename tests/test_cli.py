"""The ``ipchan`` command and the generated register map."""

import subprocess
import sys
from pathlib import Path

import pytest

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
    for command in ("demo", "regmap", "esp", "km", "latch"):
        assert command in result.stdout


def test_demo_on_model(capsys):
    assert main(["demo", "--backend", "model", "--entries", "8"]) == 0
    out = capsys.readouterr().out
    assert "version is now 1" in out
    assert "with generation 2 (it was 1)" in out
    assert "TableFullError" in out
    # Part 8: section 2.4 on the same engine, told to the holders in order.
    assert "latch 2 is ESTABLISHED" in out
    assert "is accepted for it: True" in out
    assert out.index("TCB told: broken latch 2") < out.index("its SA was accepted only after latch 2")
    assert "the old tag is refused now: False for the broken latch, False for the new one" in out


def test_demo_rejects_bad_entries(capsys):
    assert main(["demo", "--backend", "model", "--entries", "12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ipchan demo: --entries: Number of entries must be a power of two")


@pytest.mark.parametrize("argv,message", [
    (["--backend", "serial"], "ipchan demo: --backend serial needs --port (a device such as "
                              "/dev/ttyUSB1, or a pyserial URL)"),
    (["--backend", "model", "--port", "/dev/ttyUSB1"],
     "ipchan demo: --port is for --backend serial, not --backend model"),
    (["--backend", "verilator", "--baudrate", "115200"],
     "ipchan demo: --baudrate is for --backend serial, not --backend verilator"),
    (["--backend", "serial", "--port", "/dev/ipchan-no-such-board"],
     "ipchan demo: --backend serial: Cannot open serial port '/dev/ipchan-no-such-board' at "
     "1000000 baud"),
])
def test_demo_backend_refusals(capsys, argv, message):
    assert main(["demo", *argv]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_esp_process_has_no_serial_backend(capsys):
    # A board's link carries no packets: the ESP command keeps its two backends.
    with pytest.raises(SystemExit) as exc:
        main(["esp", "process", "--sa", "s.yaml", "--direction", "inbound", "--in", "i.pcap",
              "--out", "o.pcap", "--tags", "t.jsonl", "--backend", "serial"])
    assert exc.value.code == 2
    assert "invalid choice: 'serial' (choose from 'verilator', 'model')" in capsys.readouterr().err


def test_key_manager_is_importable_from_the_host_package():
    import ipchan.sw
    from ipchan.sw import KeyManager
    from ipchan.sw.keymgr.manager import KeyManager as the_class
    assert KeyManager is the_class and "KeyManager" in ipchan.sw.__all__
    with pytest.raises(AttributeError, match=r"module 'ipchan.sw' has no attribute 'Nope'"):
        ipchan.sw.Nope
