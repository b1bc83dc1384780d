"""What place and route says about a build: Fmax per clock and utilisation per kind of cell.

nextpnr writes both to a JSON file when given ``--report FILE`` (``fmax``: for each clock net the
achieved and the constrained frequency in MHz; ``utilization``: for each cell type the cells used
and the device's total). :func:`read_report` turns that, plus a count of flip-flops from the
synthesised netlist where nextpnr has none (the iCE40 packs them into logic cells), into a
:class:`Report`; :func:`markdown_section` and :func:`update_markdown` put it into a document.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path


__all__ = ["ReportError", "Clock", "Usage", "Report", "read_report", "format_report",
           "markdown_section", "misfit_section", "update_markdown"]


class ReportError(RuntimeError):
    """A report is missing or is not what nextpnr writes."""


@dataclass(frozen=True)
class Clock:
    net: str
    achieved_mhz: float
    constraint_mhz: float

    @property
    def met(self):
        return self.achieved_mhz >= self.constraint_mhz


@dataclass(frozen=True)
class Usage:
    label: str
    used: int
    available: int  # None when the device's total is not in the report

    @property
    def fits(self):
        return self.available is None or self.used <= self.available

    def __str__(self):
        if self.available is None:
            return f"{self.used}"
        return f"{self.used} / {self.available} ({100 * self.used / self.available:.0f}%)"


@dataclass(frozen=True)
class Report:
    clocks: tuple
    usage: tuple

    @property
    def fmax_mhz(self):
        """The slowest clock's achieved frequency."""
        return min(c.achieved_mhz for c in self.clocks)

    @property
    def meets_timing(self):
        return all(c.met for c in self.clocks)

    @property
    def fits(self):
        return all(u.fits for u in self.usage)

    def usage_of(self, label):
        for u in self.usage:
            if u.label == label:
                return u
        raise KeyError(label)


def _load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ReportError(f"No {what} at {path}: did the build run to the end?") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"The {what} at {path} is not JSON: {exc}") from None


def _netlist_counts(path):
    netlist = _load_json(path, "synthesised netlist")
    counts = {}
    for module in netlist.get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            counts[cell["type"]] = counts.get(cell["type"], 0) + 1
    return counts


def read_report(board, build_dir, name="top"):
    """The :class:`Report` of ``board``'s build in ``build_dir`` (nextpnr's ``<name>.report.json``
    and, for netlist-counted lines, Yosys's ``<name>.json``)."""
    build_dir = Path(build_dir)
    data = _load_json(build_dir / f"{name}.report.json", "nextpnr report")
    if not isinstance(data, dict) or "fmax" not in data or "utilization" not in data:
        raise ReportError(f"{build_dir / f'{name}.report.json'} has no 'fmax' and 'utilization': "
                          f"it is not a nextpnr --report file")
    clocks = tuple(sorted((Clock(net, float(v["achieved"]), float(v["constraint"]))
                           for net, v in data["fmax"].items()), key=lambda c: c.net))
    if not clocks:
        raise ReportError(f"{build_dir / f'{name}.report.json'} names no clock: the design has "
                          f"no constrained clock, so nextpnr checked no timing")
    netlist = None
    usage = []
    for res in board.resources:
        if res.source == "nextpnr":
            used = sum(data["utilization"].get(t, {}).get("used", 0) for t in res.cell_types)
            totals = [data["utilization"][t]["available"] for t in res.cell_types
                      if t in data["utilization"]]
            usage.append(Usage(res.label, used, sum(totals) if totals else None))
        else:
            if netlist is None:
                netlist = _netlist_counts(build_dir / f"{name}.json")
            usage.append(Usage(res.label, sum(netlist.get(t, 0) for t in res.cell_types), None))
    return Report(clocks, tuple(usage))


def format_report(report):
    """Plain text, for a terminal."""
    lines = []
    for c in report.clocks:
        verdict = "met" if c.met else "NOT MET"
        lines.append(f"  Fmax {c.achieved_mhz:7.2f} MHz  (constraint {c.constraint_mhz:.2f} MHz, "
                     f"{verdict})  clock {c.net}")
    width = max(len(u.label) for u in report.usage)
    for u in report.usage:
        lines.append(f"  {u.label:<{width}}  {u}")
    return "\n".join(lines)


def _begin(board_name):
    return f"<!-- ipchan.boards.build: {board_name} begin -->"


def _end(board_name):
    return f"<!-- ipchan.boards.build: {board_name} end -->"


def _engine_line(board, params):
    table = {"parallel": "registers in flip-flops", "serial": "registers and SA table in block RAM"}
    return (f"Engine: {params.n_entries} SAs, generation {params.generation_width} bits, version "
            f"{params.version_width} bits, replay window up to {params.window_max}, "
            f"{table[board.table]} (`table=\"{board.table}\"`). "
            f"Clock {board.clk_freq / 1e6:g} MHz.")


def markdown_section(board, params, report, *, command, tools, source, seconds):
    """The Markdown that :func:`update_markdown` puts between a board's markers."""
    lines = [
        _begin(board.name),
        f"### {board.title}",
        "",
        _engine_line(board, params),
        "",
        "| clock net | Fmax (MHz) | constraint (MHz) |",
        "|---|---:|---:|",
    ]
    for c in report.clocks:
        lines.append(f"| `{c.net}` | {c.achieved_mhz:.2f} | {c.constraint_mhz:.2f} |")
    lines += ["", "| resource | used | of | share |", "|---|---:|---:|---:|"]
    for u in report.usage:
        if u.available is None:
            lines.append(f"| {u.label} | {u.used} | | |")
        else:
            lines.append(f"| {u.label} | {u.used} | {u.available} | "
                         f"{100 * u.used / u.available:.0f}% |")
    lines += [
        "",
        f"Measured with `{command}` on the gateware at {source} ({tools}; "
        f"synthesis, place and route and packing took {seconds:.0f} s on a shared 2-core "
        f"machine).",
        _end(board.name),
    ]
    return "\n".join(lines) + "\n"


def misfit_section(board, params, overfull, *, command, tools, source):
    """The section for a build that did not fit: which cells ran out, by how much."""
    lines = [
        _begin(board.name),
        f"### {board.title}",
        "",
        _engine_line(board, params),
        "",
        "**Does not fit.** nextpnr's packer needs more cells than the device has:",
        "",
        "| cell type | needed | available | share |",
        "|---|---:|---:|---:|",
    ]
    for cell, used, available in overfull:
        lines.append(f"| `{cell}` | {used} | {available} | {100 * used / available:.0f}% |")
    lines += [
        "",
        f"Measured with `{command}` on the gateware at {source} ({tools}).",
        _end(board.name),
    ]
    return "\n".join(lines) + "\n"


def update_markdown(path, board_name, section):
    """Replace ``board_name``'s section in the Markdown file ``path`` (between its markers), or
    append it when the file has none; create the file if need be."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(re.escape(_begin(board_name)) + r".*?" + re.escape(_end(board_name)) +
                         r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        if text and not text.endswith("\n\n"):
            text += "\n" if text.endswith("\n") else "\n\n"
        text += section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
