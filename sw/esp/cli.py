"""``ipchan esp process``: run the packets of a pcap through the engine's ESP datapath.

    ipchan esp process --sa SAS.yaml --direction inbound|outbound --in IN.pcap --out OUT.pcap
                       --tags TAGS.jsonl [--backend verilator|model] [--profile compact|fast]

The SAs of SAS.yaml (:mod:`.sas_yaml`) are installed through the driver and committed once; then
every packet of IN.pcap goes through the engine in order, through the one packet interface of
the driver (:meth:`ipchan.sw.driver.Engine.process_packets`): on ``verilator`` (the default) the
gateware's ESP datapath in the Verilator simulation (GCM profile ``--profile``, default compact;
built once per design and parameters, then cached, with a progress line while it builds), on
``model`` the golden model. The engine has 16 table slots when the file has at most 16 SAs (one
cached build serves most files), else 256, and the smallest replay window maximum that holds the
file's windows. OUT.pcap receives what comes out (the
packets handed up, in order, each with its input's timestamp and a link header like its input's);
TAGS.jsonl one JSON object per input packet: ``in`` (input index), ``verdict`` (``ok``,
``auth_fail``, ``replay``, ``no_sa``, ``malformed``, ``seq_overflow``), ``sa_valid``,
``sa_index``, ``sa_generation``, ``version``, ``seq``, ``out`` (index in OUT.pcap or null), and
``tag`` (the packed tuser word, hex).

Outbound, the SA of each packet is the first outbound SA whose selectors match it; a packet no
SA matches gets ``no_sa`` and one whose IP header cannot be read ``malformed``, both from the host
side (the engine never sees them; their ``version`` is the engine's version then), and so does
a record longer than 65535 bytes, which no IP packet is (``malformed``), in both directions.

Errors (a SAS.yaml or pcap that cannot be used, an SA the engine cannot hold, an output that
cannot be written) print one line naming the file and the field on stderr and exit with status
2; outputs are written to temporary files renamed into place at the end, so a failed run leaves
nothing behind.
"""

import json
import os
import sys
import tempfile

from ipchan.hw.contract import Direction, EngineParams, Verdict, pack_tag

from .pcap import PcapError, Record, join_link, output_linktype, pcap_bytes, read_pcap, split_link
from .sas_yaml import SasError, engine_params_for, install_sas, parse_sas, select_sa


__all__ = ["add_subcommands", "cmd_esp_process", "process_packets", "EXIT_USAGE"]

EXIT_USAGE = 2
PROG = "ipchan esp process"

#: GCM profiles of the gateware datapath, the default first.
PROFILES = ("compact", "fast")
#: Table size for files with at most this many SAs (a small, quickly built engine), else 256.
SMALL_TABLE = 16
#: The longest record that can be an IP packet.
PACKET_MAX = 0xFFFF


class _UsageError(Exception):
    pass


def add_subcommands(subparsers):
    """Add ``esp`` (with ``process``) to the ``ipchan`` command's ``subparsers``."""
    from ipchan.sw.backends import ESP_BACKENDS
    esp = subparsers.add_parser(
        "esp", help="ESP datapath: process packets with the engine",
        description="The engine's ESP datapath (RFC 4303 with AES-GCM, RFC 4106, and AES-GMAC, "
                    "RFC 4543).")
    sub = esp.add_subparsers(dest="esp_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "process", help="run the packets of a pcap through the engine",
        description="Install the SAs of SAS.yaml, run the packets of IN.pcap through the engine "
                    "in one direction and write what comes out to OUT.pcap and one tag per input "
                    "packet to TAGS.jsonl.")
    p.add_argument("--sa", required=True, metavar="SAS.yaml", help="the SAs (YAML)")
    p.add_argument("--direction", required=True, choices=("inbound", "outbound"),
                   help="inbound: decapsulate ESP; outbound: protect with the matching SA")
    p.add_argument("--in", dest="input", required=True, metavar="IN.pcap", help="packets in")
    p.add_argument("--out", required=True, metavar="OUT.pcap", help="packets out")
    p.add_argument("--tags", required=True, metavar="TAGS.jsonl", help="one tag per input packet")
    p.add_argument("--backend", choices=ESP_BACKENDS, default=ESP_BACKENDS[0],
                   help="engine: the Verilator simulation of the gateware (default) or the "
                        "golden model")
    p.add_argument("--profile", choices=PROFILES, default=PROFILES[0],
                   help="GCM profile of the gateware datapath (verilator only; default compact, "
                        "which builds faster; fast takes fewer clocks per packet)")
    p.set_defaults(func=cmd_esp_process)
    return esp


def cmd_esp_process(args, stderr=None):
    from ipchan.sim.verilator_build import VerilatorBuildError
    from ipchan.sw.link import LinkError
    stderr = stderr or sys.stderr
    try:
        return _process(args)
    except (_UsageError, SasError, PcapError) as exc:
        print(f"{PROG}: {exc}", file=stderr)
        return EXIT_USAGE
    except (VerilatorBuildError, LinkError) as exc:
        print(f"{PROG}: --backend {args.backend}: {exc}", file=stderr)
        return EXIT_USAGE


def params_for(specs):
    """The engine for ``specs``: :data:`SMALL_TABLE` slots if they fit, else 256, and a replay
    window maximum that holds theirs."""
    base = EngineParams(n_entries=SMALL_TABLE) if len(specs) <= SMALL_TABLE else EngineParams()
    return engine_params_for(specs, base)


def _process(args):
    if os.path.abspath(args.out) == os.path.abspath(args.tags):
        raise _UsageError(f"{args.out}: --out and --tags name the same file")
    specs = parse_sas(args.sa)
    capture = read_pcap(args.input)
    from ipchan.sw.backends import open_engine
    engine = open_engine(args.backend, params_for(specs),
                         esp=getattr(args, "profile", PROFILES[0]))
    try:
        records = install_sas(engine, specs, args.sa)
        outputs, tags = process_packets(engine, records, Direction[args.direction.upper()],
                                        capture)
    finally:
        engine.close()
    linktype = output_linktype(capture.linktype)
    try:
        blob = pcap_bytes(linktype, outputs, capture.nanosecond)
    except PcapError as exc:
        raise _UsageError(f"{args.out}: {exc}") from None
    lines = "".join(json.dumps(tag) + "\n" for tag in tags)
    _write_atomically([(args.out, blob), (args.tags, lines.encode())])
    return 0


def process_packets(engine, records, direction, capture):
    """Run ``capture``'s packets through ``engine``'s datapath (one pipelined exchange):
    ``(output Records, tag dicts for JSON)``."""
    # Nothing commits while the packets run, so the version of the host-side tags is one read.
    version = engine.version()
    split, requests, answers = [], [], []
    for rec in capture.records:
        header, packet = split_link(capture.linktype, rec.data)
        split.append(header)
        verdict, sa_index = None, None
        if len(packet) > PACKET_MAX:
            verdict = Verdict.MALFORMED
        elif direction == Direction.OUTBOUND:
            record, view = select_sa(records, packet)
            if record is None:
                verdict = Verdict.NO_SA if view is not None else Verdict.MALFORMED
            else:
                sa_index = record.index
        if verdict is None:
            answers.append(len(requests))
            requests.append((direction, packet, sa_index))
        else:
            answers.append({"verdict": verdict, "sa_valid": 0, "sa_index": 0,
                            "sa_generation": 0, "version": version, "seq": 0})
    engine_answers = engine.process_packets(requests)
    outputs, tags = [], []
    for n, (rec, header, answer) in enumerate(zip(capture.records, split, answers)):
        if isinstance(answer, dict):
            out, tag = None, answer
        else:
            tag, out = engine_answers[answer]
        out_index = None
        if out is not None:
            out_index = len(outputs)
            outputs.append(Record(rec.ts_sec, rec.ts_frac,
                                  join_link(capture.linktype, header, out), len(out)))
        tags.append({
            "in": n,
            "verdict": Verdict(tag["verdict"]).name.lower(),
            "sa_valid": bool(tag["sa_valid"]),
            "sa_index": tag["sa_index"],
            "sa_generation": tag["sa_generation"],
            "version": tag["version"],
            "seq": tag["seq"],
            "out": out_index,
            "tag": hex(pack_tag(**tag)),
        })
    return outputs, tags


def _write_atomically(files):
    """Write every (path, bytes) to a temporary file beside it, then rename them all; on any
    error remove the temporaries and raise a _UsageError naming the file."""
    temps, placed = [], []
    umask = os.umask(0)
    os.umask(umask)
    try:
        for path, data in files:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                fd, tmp = tempfile.mkstemp(prefix=".ipchan-", suffix=".part", dir=directory)
            except OSError as exc:
                raise _UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
            temps.append(tmp)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o666 & ~umask)
            except OSError as exc:
                raise _UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
        for (path, _), tmp in zip(files, temps):
            try:
                os.replace(tmp, path)
                placed.append(path)
            except OSError as exc:
                raise _UsageError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        for tmp in temps + placed:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


def main(argv=None):
    """``python -m ipchan.sw.esp.cli esp process ...``: the subcommand on its own."""
    import argparse
    parser = argparse.ArgumentParser(prog="ipchan")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_subcommands(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
