"""``ipchan demo``: the engine's SA table and version tag at work, narrated."""

import random
import time

from .backends import open_engine
from .driver import EngineError, SaConfig
from .link import LinkError


class EngineUnavailable(Exception):
    """The engine the demo was asked for could not be opened (no such port, another build...)."""


def _sa(rng, spi, direction="inbound", algorithm="aes-gcm-16", mode="transport"):
    return SaConfig(spi=spi, direction=direction, mode=mode, algorithm=algorithm,
                    key=rng.randbytes(16), salt=rng.randbytes(4), replay_window=64)


def run_demo(*, backend, params, out, **options):
    def say(text=""):
        print(text, file=out, flush=True)

    def show_lookup(spi):
        r = engine.lookup(spi)
        where = (f"slot {r.index}, generation {r.generation}" if r.found else "no SA")
        say(f"    lookup SPI {spi:#010x} -> {where}   (checked under version {r.version})")
        return r

    rng = random.Random(5660)
    table = "the board's SA table" if params is None else f"{params.n_entries}-slot SA table"
    say(f"ipchan demo: driving the engine on the {backend} backend ({table}).")
    if backend == "verilator":
        say("  Starting a Verilator simulation of the gateware in its own process "
            "(built once, then cached)...")
    started = time.monotonic()
    try:
        engine = open_engine(backend, params, **options)
    except (LinkError, ValueError) as exc:
        raise EngineUnavailable(f"--backend {backend}: {exc}") from exc
    with engine:
        say(f"  Connected in {time.monotonic() - started:.1f} s to {engine!r}.")
        p = engine.params
        say(f"  The engine reports {p.n_entries} slots, {p.n_buckets} buckets in each of 2 SPI "
            f"hash tables, {p.generation_width}-bit generations, a {p.version_width}-bit "
            f"version tag now at {engine.version()}.")
        say()
        say("1. Stage three inbound SAs and one outbound SA. Staged SAs are invisible to the "
            "datapath:")
        inbound = [0x1000A001, 0x1000A002, 0x1000A003]
        refs = {}
        for spi in inbound:
            refs[spi] = engine.install(_sa(rng, spi))
            say(f"    installed inbound SPI {spi:#010x} into slot {refs[spi].index}, "
                f"generation {refs[spi].generation} (staged)")
        out_ref = engine.install(_sa(rng, 0x2000B001, direction="outbound", mode="tunnel",
                                     algorithm="aes-gmac"))
        say(f"    installed outbound SPI 0x2000b001 (AES-GMAC, tunnel) into slot "
            f"{out_ref.index} (staged)")
        show_lookup(inbound[0])
        say()
        say("2. Commit: every staged change becomes visible in one clock cycle, and the version "
            "moves in that same cycle.")
        v = engine.commit()
        say(f"    version is now {v}")
        for spi in inbound:
            show_lookup(spi)
        say()
        victim = inbound[1]
        say(f"3. Delete SPI {victim:#010x}. Until the commit it stays visible:")
        engine.delete(refs[victim].index)
        show_lookup(victim)
        v = engine.commit()
        say(f"    committed: version {v}; the slot's key is zeroized and the slot goes to the "
            f"back of the free list")
        show_lookup(victim)
        say()
        say("4. Fill the table until the freed slot comes round again: a reused slot always "
            "has a new generation,")
        say("   so a packet tagged (slot, generation) can never be mistaken for the new SA's.")
        spi = 0x3000C000
        reused = None
        while reused is None and engine.occupancy()[1] > 0:
            spi += 1
            ref = engine.install(_sa(rng, spi))
            if ref.index == refs[victim].index:
                reused = (spi, ref)
        v = engine.commit()
        if reused:
            say(f"    SPI {reused[0]:#010x} landed in slot {reused[1].index} with generation "
                f"{reused[1].generation} (it was {refs[victim].generation}); version {v}")
            show_lookup(reused[0])
        live, free = engine.occupancy()
        say(f"    {live} slots live, {free} free")
        say()
        say("5. A change of latching state held only by the key manager still moves the "
            "version:")
        say(f"    bump_version() -> {engine.bump_version()}")
        say()
        say("6. Bad input is refused and changes nothing:")
        before = (engine.version(), engine.occupancy())
        for label, action in (
            ("SPI 200 (IANA-reserved)", lambda: _sa(rng, 200)),
            ("a 24-byte key", lambda: SaConfig(spi=0x4000, direction="inbound",
                                               mode="transport", algorithm="aes-gcm-16",
                                               key=bytes(24), salt=bytes(4))),
            ("install into a full table", lambda: engine.install(_sa(rng, 0x4001))),
            ("commit with nothing staged", engine.commit),
        ):
            try:
                action()
            except (ValueError, TypeError, EngineError) as exc:
                say(f"    {label}: {type(exc).__name__}: {exc}")
            else:
                say(f"    {label}: accepted (the table had room)")
        after = (engine.version(), engine.occupancy())
        say(f"    version and occupancy before {before}, after {after}")
        say()
        c = engine.counters()
        say("7. Engine counters: " + ", ".join(f"{k} {v}" for k, v in c.items()))
        say()
        _latching(engine, rng, say)
    return 0


def _latching(engine, rng, say):
    """Part 8: the key manager on the same engine, through section 2.4's scenario."""

    from .keymgr import Box, ChildSaProposal, Identity, KeyManager, PadEntry, Protection, SpdEntry

    say("8. Connection latching (RFC 5660) on this engine: the key manager owns the SA table now.")
    for entry in list(engine.entries()):
        engine.delete(entry.index)
    say(f"    emptied the table for it: version {engine.commit()}")
    local, lan, gcm = "192.0.2.1", "198.51.100.0/24", Protection("aes-gcm-16", 128)
    km = KeyManager(engine,
                    spd=[SpdEntry.parse("lan", action="protect", local_addr=local,
                                        remote_addr=lan, protection=gcm)],
                    pad=[PadEntry.parse("btns", id_type="public-key", pattern="*",
                                        auth="raw-public-key", addresses=[lan])])

    def told(who):
        return lambda event: say(f"    -> {who} told: {event.kind} latch {event.handle} at version "
                                 f"{event.version}" + (f" ({event.reason})" if event.reason else ""))

    spis = iter(range(0x5000, 0x6000, 2))

    def child_sa(peer, remote, rport):
        spi = next(spis)
        return ChildSaProposal(
            peer=peer, protection=gcm,
            selectors=Box.parse(local_addr=local, remote_addr=remote, proto="tcp",
                                local_port=143, remote_port=rport),
            inbound_spi=spi, outbound_spi=spi + 1,
            inbound_key=rng.randbytes(16), inbound_salt=rng.randbytes(4),
            outbound_key=rng.randbytes(16), outbound_salt=rng.randbytes(4))

    listener = km.create_listener_latch(local, "tcp", 143, holder=told("the IMAP server"))
    say(f"    an IMAP server listens on {local}:143: listener latch {listener}, version "
        f"{km.version()}")
    alice = Identity.btns(rng.randbytes(32))
    first = km.accept_child_sa(child_sa(alice, "198.51.100.7", 40000))
    km.set_holder(first.created, told("the first connection's TCB"))
    info = km.inquire_latch(first.created)
    say(f"    a BTNS peer (raw key {alice.value[:8]}...) at 198.51.100.7:40000 brings a child SA: "
        f"latch {first.created} is {info.state.name}")
    say(f"      latched to SA slot {first.inbound.index}, generation {first.inbound.generation}, "
        f"established at version {info.established_version}")
    tag = engine.lookup(first.inbound.spi)
    say(f"    an inbound packet tagged (slot {tag.index}, generation {tag.generation}, version "
        f"{tag.version}) is accepted for it: "
        f"{km.check_inbound(first.created, tag.index, tag.generation, tag.version)}")
    say("    the peer vanishes; another BTNS peer takes its address and opens the same 5-tuple "
        "(section 2.4):")
    second = km.accept_child_sa(child_sa(Identity.btns(rng.randbytes(32)), "198.51.100.7", 40000))
    say(f"    its SA was accepted only after latch {first.created} was broken; "
        f"new latch {second.created}, version {second.version}")
    say(f"    the old tag is refused now: "
        f"{km.check_inbound(first.created, tag.index, tag.generation, km.version())} for the "
        f"broken latch, "
        f"{km.check_inbound(second.created, tag.index, tag.generation, km.version())} for the "
        f"new one")
    km.release_latch(first.created)
    say(f"    the old connection is reset and its latch released: version {km.version()}")
    say(f"    `ipchan km serve` offers this API to other processes; `ipchan latch list` shows "
        "the Latch Database.")
    km.close()
