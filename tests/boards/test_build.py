"""Bitstreams: both boards build with YoWASP and meet their clocks (marker ``synth``), plus the
build command's argument checks and report handling (fast, no tools run)."""

import json
import shutil
from pathlib import Path

import pytest

from ipchan.boards import build as board_build
from ipchan.boards.build import (BOARDS, BuildError, BuildResult, ProgramError, board_params,
                                 build, get_board, main, program, toolchain_env)
from ipchan.boards.report import ReportError, read_report, update_markdown
from ipchan.hw.contract import EngineParams


ROOT = Path(__file__).resolve().parents[2]


# -- The bitstreams --------------------------------------------------------------------------------

#: What the synth tests build: each board's own engine.
SYNTH_PARAMS = {name: board.params for name, board in BOARDS.items()}


@pytest.mark.synth
@pytest.mark.parametrize("name", list(BOARDS))
def test_bitstream_builds_and_meets_clock(name):
    board = BOARDS[name]
    build_dir = ROOT / "build" / "boards" / f"test_{name}"
    shutil.rmtree(build_dir, ignore_errors=True)
    result = build(board, params=SYNTH_PARAMS[name], build_dir=build_dir)
    assert result.bitstream == build_dir / f"top.{board.bitstream}"
    assert result.bitstream.stat().st_size > 0
    report = result.report
    clk_mhz = board.clk_freq / 1e6
    assert [c.constraint_mhz for c in report.clocks] == [pytest.approx(clk_mhz, rel=1e-4)]
    assert report.fmax_mhz >= clk_mhz, f"{name}: Fmax {report.fmax_mhz:.2f} MHz < {clk_mhz} MHz"
    assert report.meets_timing
    for usage in report.usage:
        assert usage.used > 0, f"{name}: no {usage.label} used: the design was optimised away"
        assert usage.fits, f"{name}: {usage.label} {usage} does not fit"


# -- Argument checks -------------------------------------------------------------------------------

def test_unknown_board():
    with pytest.raises(ValueError, match=r"^Board must be one of 'icebreaker', 'ulx3s', "
                                         r"not 'nexys'$"):
        get_board("nexys")
    with pytest.raises(ValueError, match=r"^Board must be one of 'icebreaker', 'ulx3s', "
                                         r"not None$"):
        get_board(None)
    with pytest.raises(ValueError, match=r"^Board must be one of 'icebreaker', 'ulx3s', "
                                         r"not 'ULX3S'$"):
        build("ULX3S")


def test_board_params():
    ulx3s = BOARDS["ulx3s"]
    assert board_params(ulx3s) == EngineParams(n_entries=256)
    assert board_params(ulx3s, 64) == EngineParams(n_entries=64)
    assert board_params(BOARDS["icebreaker"], 8).generation_width == \
        BOARDS["icebreaker"].params.generation_width
    with pytest.raises(ValueError, match=r"^Number of entries must be a power of two from 2 to "
                                         r"4096, not 3$"):
        board_params(ulx3s, 3)


def test_build_argument_checks(tmp_path):
    board = BOARDS["icebreaker"]
    with pytest.raises(TypeError, match=r"^Parameters must be an EngineParams, not 16$"):
        build(board, params=16, build_dir=tmp_path)
    for seed in (-1, True, "1"):
        with pytest.raises(ValueError, match=rf"^Seed must be a non-negative integer, "
                                             rf"not {seed!r}$"):
            build(board, seed=seed, build_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_command_line_refusals(capsys):
    for argv, message in (
            (["--board", "nexys"], "Board must be one of 'icebreaker', 'ulx3s', not 'nexys'"),
            (["--board", "ulx3s", "--entries", "100"],
             "Number of entries must be a power of two from 2 to 4096, not 100"),
            (["--program"], "--program needs exactly one --board"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert f"error: {message}\n" in capsys.readouterr().err


def test_toolchain_env_uses_yowasp():
    env = toolchain_env(BOARDS["ulx3s"], environ={})
    for var, command in board_build.TOOLS.items():
        assert Path(env[var]).name == command and Path(env[var]).exists()
    if shutil.which("openFPGALoader") is None:
        assert env["OPENFPGALOADER"] == "true"  # only to build: nothing runs it
        assert "OPENFPGALOADER" not in toolchain_env(BOARDS["ulx3s"], program=True, environ={})


def test_toolchain_env_names_a_missing_tool(monkeypatch):
    monkeypatch.setitem(board_build.TOOLS, "NEXTPNR_ECP5", "yowasp-nextpnr-nonexistent")
    with pytest.raises(BuildError, match=r"^yowasp-nextpnr-nonexistent not found: install the "
                                         r"YoWASP tools"):
        toolchain_env(BOARDS["ulx3s"])


def test_program_names_a_missing_programmer(monkeypatch, tmp_path):
    bitstream = tmp_path / "top.bin"
    bitstream.write_bytes(b"\xff")
    result = BuildResult(BOARDS["icebreaker"], BOARDS["icebreaker"].params, tmp_path, bitstream,
                         None, 0.0)
    monkeypatch.setenv("ICEPROG", str(tmp_path / "no-iceprog"))
    with pytest.raises(ProgramError, match=r"^Cannot program the iCEBreaker \(iCE40UP5K-SG48\): "
                                           r"'.*/no-iceprog' is not on PATH \(install iceprog, "
                                           r"or set ICEPROG to its path\)$"):
        program(result)


# -- Reports ---------------------------------------------------------------------------------------

def nextpnr_report(path, *, achieved=22.5, used_lc=4000):
    """A report in the layout nextpnr 0.11 writes for ``--report`` (the parts we read)."""
    path.write_text(json.dumps({
        "utilization": {
            "ICESTORM_LC": {"available": 5280, "used": used_lc},
            "ICESTORM_RAM": {"available": 30, "used": 20},
            "SB_IO": {"available": 39, "used": 5},
            "SB_GB": {"available": 8, "used": 3},
        },
        "fmax": {"cd_sync.clk": {"achieved": achieved, "constraint": 12.00004768371582}},
        "critical_paths": [],
    }))


def netlist(path, types):
    path.write_text(json.dumps({"modules": {"top": {"cells": {
        f"c{i}": {"type": t} for i, t in enumerate(types)}}}}))


def test_read_report(tmp_path):
    board = BOARDS["icebreaker"]
    nextpnr_report(tmp_path / "top.report.json")
    netlist(tmp_path / "top.json", ["SB_DFF", "SB_DFFE", "SB_DFFESR", "SB_LUT4", "SB_RAM40_4K"])
    report = read_report(board, tmp_path)
    assert report.fmax_mhz == 22.5 and report.meets_timing and report.fits
    assert report.usage_of("logic cells (LUT4 + FF)").used == 4000
    assert report.usage_of("logic cells (LUT4 + FF)").available == 5280
    assert report.usage_of("flip-flops").used == 3
    assert report.usage_of("EBR (4 kbit block RAM)").used == 20
    assert str(report.usage_of("IO")) == "5 / 39 (13%)"

    nextpnr_report(tmp_path / "top.report.json", achieved=11.0, used_lc=5281)
    report = read_report(board, tmp_path)
    assert not report.meets_timing and not report.fits


def test_read_report_refusals(tmp_path):
    board = BOARDS["ulx3s"]
    with pytest.raises(ReportError, match=r"^No nextpnr report at .*top.report.json: did the "
                                          r"build run to the end\?$"):
        read_report(board, tmp_path)
    (tmp_path / "top.report.json").write_text('{"modules": {}}')
    with pytest.raises(ReportError, match=r"has no 'fmax' and 'utilization': it is not a nextpnr "
                                          r"--report file$"):
        read_report(board, tmp_path)
    (tmp_path / "top.report.json").write_text('{"fmax": {}, "utilization": {}}')
    with pytest.raises(ReportError, match=r"names no clock"):
        read_report(board, tmp_path)


def test_update_markdown_replaces_only_its_section(tmp_path):
    doc = tmp_path / "boards.md"
    doc.write_text("# Boards\n\nIntro.\n")
    section = lambda name, n: (f"<!-- ipchan.boards.build: {name} begin -->\n{n}\n"
                               f"<!-- ipchan.boards.build: {name} end -->\n")
    update_markdown(doc, "ulx3s", section("ulx3s", 1))
    update_markdown(doc, "icebreaker", section("icebreaker", 2))
    update_markdown(doc, "ulx3s", section("ulx3s", 3))
    assert doc.read_text() == ("# Boards\n\nIntro.\n\n" + section("ulx3s", 3) + "\n" +
                               section("icebreaker", 2))


def test_program_refused_before_building(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "no-openFPGALoader"))
    assert main(["--board", "ulx3s", "--program", "--build-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"error: Cannot program the ULX3S (ECP5 LFE5U-85F-6BG381): "
        f"'{tmp_path / 'no-openFPGALoader'}' is not on PATH (install openFPGALoader, or set "
        f"OPENFPGALOADER to its path)\n")
    assert list(tmp_path.iterdir()) == []  # nothing was built


def test_overfull_reads_nextpnr_utilisation():
    log = ("Info: Device utilisation:\n"
           "Info: \t         ICESTORM_LC:    5723/   5280   108%\n"
           "Info: \t        ICESTORM_RAM:      39/     30   130%\n"
           "Info: \t               SB_IO:       5/     39    12%\n"
           "Info: \t               SB_GB:       8/      8   100%\n")
    assert board_build.overfull(log) == [("ICESTORM_LC", 5723, 5280), ("ICESTORM_RAM", 39, 30)]
    assert board_build.overfull("Info: Placed 6 cells based on constraints.\n") == []


def test_misfit_section_says_what_ran_out(tmp_path):
    from ipchan.boards.report import misfit_section
    board = BOARDS["icebreaker"]
    text = misfit_section(board, board.params, [("ICESTORM_RAM", 39, 30)], command="cmd",
                          tools="tools", source="commit abc")
    assert "**Does not fit.**" in text
    assert "| `ICESTORM_RAM` | 39 | 30 | 130% |" in text
    assert "Measured with `cmd` on the gateware at commit abc (tools)." in text
    doc = tmp_path / "boards.md"
    update_markdown(doc, "icebreaker", text)
    assert doc.read_text() == text
