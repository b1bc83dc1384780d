"""The one-hot state machine (:class:`ipchan.hw.onehot.OneHotFSM`): the same behaviour as
Amaranth's ``m.FSM``, checked against it clock for clock, and its argument checks."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from ipchan.hw.onehot import OneHotFSM


class _Machine:
    """The same machine written twice, with ``m.FSM`` and with :class:`OneHotFSM`: states
    A..D, transitions under inputs ``go`` and ``alt``, an override (a later ``next`` under a
    condition), a state that stays unless told to leave, a signal several states drive (with
    a last-wins assignment inside one state) and a register several states load."""

    STATES = ("A", "B", "C", "D")

    def __init__(self):
        self.go = Signal()
        self.alt = Signal()
        self.data = Signal(8)

    def build(self, onehot):
        m = Module()
        out = Signal(8, name="out")
        reg = Signal(8, name="reg")
        if onehot:
            fsm = OneHotFSM(m, init="A", name="t")
            ctx = fsm

            def state(name):
                return fsm.State(name)

            def goto(name):
                fsm.next = name

            def drive(value):
                fsm.assign(out, value)

            def load(value):
                fsm.assign(reg, value, domain="sync")
        else:
            ctx = m.FSM(init="A")

            def state(name):
                return m.State(name)

            def goto(name):
                m.next = name

            def drive(value):
                m.d.comb += out.eq(value)

            def load(value):
                m.d.sync += reg.eq(value)

        with ctx as f:
            with state("A"):
                drive(1)
                with m.If(self.go):
                    goto("B")
            with state("B"):
                drive(self.data)
                goto("C")
                with m.If(self.alt):
                    # Overrides the transition above, as with m.next.
                    goto("D")
                    drive(self.data + 1)
            with state("C"):
                load(self.data)
                with m.If(self.go & self.alt):
                    goto("A")
                with m.Elif(self.go):
                    goto("D")
                    goto("C")     # the last one wins: stays in C
            with state("D"):
                load(self.data ^ 0xFF)
                drive(reg)
                with m.If(~self.go):
                    goto("A")
        if onehot:
            bits = [f.bit(s) for s in self.STATES]
        else:
            bits = [f.ongoing(s) for s in self.STATES]
        return m, out, reg, bits


def _run(onehot, stimulus):
    machine = _Machine()
    m, out, reg, bits = machine.build(onehot)
    trace = []

    async def bench(ctx):
        for go, alt, data in stimulus:
            ctx.set(machine.go, go)
            ctx.set(machine.alt, alt)
            ctx.set(machine.data, data)
            trace.append((tuple(ctx.get(b) for b in bits), ctx.get(out), ctx.get(reg)))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return trace


def test_same_behaviour_as_amaranth_fsm():
    rng = random.Random(5660)
    stimulus = [(rng.getrandbits(1), rng.getrandbits(1), rng.getrandbits(8))
                for _ in range(600)]
    onehot = _run(True, stimulus)
    binary = _run(False, stimulus)
    assert onehot == binary
    # Exactly one state bit each clock, and every state and transition was exercised.
    assert all(sum(bits) == 1 for bits, _, _ in onehot)
    assert {bits for bits, _, _ in onehot} == {
        tuple(int(i == k) for i in range(4)) for k in range(4)}


def test_a_signal_no_state_drives_is_zero():
    m = Module()
    out = Signal(4)
    go = Signal()
    with OneHotFSM(m, init="IDLE") as fsm:
        assert fsm.current is None
        with fsm.State("IDLE"):
            assert fsm.current == "IDLE"
            with m.If(go):
                fsm.next = "RUN"
        with fsm.State("RUN"):
            fsm.assign(out, 9)
            fsm.next = "IDLE"
    seen = []

    async def bench(ctx):
        for g in (0, 1, 0, 0):
            ctx.set(go, g)
            seen.append(ctx.get(out))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [0, 0, 9, 0]


def _unused_module():
    # A module these tests only hand to the state machine: never elaborated, and that is fine.
    m = Module()
    m._MustUse__silence = True
    return m


def _fsm():
    return OneHotFSM(_unused_module(), init="A")


@pytest.mark.parametrize("kwargs, message", [
    ({"init": 1}, r"^Initial state must be a non-empty string, not 1$"),
    ({"init": ""}, r"^Initial state must be a non-empty string, not ''$"),
    ({"init": "A", "name": None}, r"^Name must be a non-empty string, not None$"),
    ({"init": "A", "domain": 2}, r"^Domain must be a non-empty string, not 2$"),
])
def test_refuses_bad_arguments(kwargs, message):
    with pytest.raises(TypeError, match=message):
        OneHotFSM(_unused_module(), **kwargs)


def test_refuses_a_state_without_a_body():
    fsm = _fsm()
    with pytest.raises(ValueError, match=r"^State machine 'fsm' names states without a body: "
                                         r"'B', 'C'$"):
        with fsm:
            with fsm.State("A"):
                fsm.next = "B"
                fsm.next = "C"


def test_refuses_a_state_defined_twice():
    fsm = _fsm()
    with fsm.State("A"):
        pass
    with pytest.raises(ValueError, match=r"^State 'A' is defined twice$"):
        with fsm.State("A"):
            pass


def test_refuses_a_state_inside_a_state():
    fsm = _fsm()
    with pytest.raises(ValueError, match=r"^State 'B' is defined inside state 'A'$"):
        with fsm.State("A"):
            with fsm.State("B"):
                pass


def test_refuses_a_state_after_closing():
    fsm = _fsm()
    with fsm:
        with fsm.State("A"):
            pass
    with pytest.raises(ValueError, match=r"^State 'B' is defined after the state machine "
                                         r"'fsm' was closed$"):
        with fsm.State("B"):
            pass


def test_refuses_next_outside_a_state():
    fsm = _fsm()
    with pytest.raises(ValueError, match=r"^The next state \('B'\) is assigned outside a "
                                         r"state$"):
        fsm.next = "B"
    with pytest.raises(AttributeError, match=r"^The next state can only be assigned$"):
        fsm.next


@pytest.mark.parametrize("state", [None, "", 3])
def test_refuses_a_bad_state_name(state):
    fsm = _fsm()
    with pytest.raises(TypeError, match=rf"^State must be a non-empty string, not "
                                        rf"{state!r}$"):
        with fsm.State("A"):
            fsm.next = state


def test_refuses_bad_assignments():
    fsm = _fsm()
    s = Signal(4, name="s")
    with pytest.raises(ValueError, match=r"^Signal \(sig s\) is assigned outside a state$"):
        fsm.assign(s, 1)
    with fsm.State("A"):
        with pytest.raises(TypeError, match=r"^Only a Signal can be assigned, not 5$"):
            fsm.assign(5, 1)
        with pytest.raises(ValueError, match=r"^Domain must be 'comb' or 'sync', not 'pix'$"):
            fsm.assign(s, 1, domain="pix")
        fsm.assign(s, 1)
        with pytest.raises(ValueError, match=r"^Signal \(sig s\) is assigned in domain 'sync' "
                                             r"here and in 'comb' before$"):
            fsm.assign(s, 1, domain="sync")


def test_active_follows_its_states():
    """``active`` is a flip-flop equal, in every clock, to the OR of its states' bits, from
    reset on (including the initial state)."""
    m = Module()
    go = Signal()
    with OneHotFSM(m, init="A", name="t") as fsm:
        with_init = fsm.active(("A", "C"))
        without = fsm.active(["B"], name="only_b")
        for state, target in (("A", "B"), ("B", "C"), ("C", "A")):
            with fsm.State(state):
                with m.If(go):
                    fsm.next = target
    assert without.name == "only_b"
    seen = []

    async def bench(ctx):
        rng = random.Random(4)
        for _ in range(60):
            ctx.set(go, rng.getrandbits(1))
            a, b, c = (ctx.get(fsm.bit(s)) for s in "ABC")
            seen.append((ctx.get(with_init), ctx.get(without), a | c, b))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen[0] == (1, 0, 1, 0)
    assert all(w == ac and wo == b for w, wo, ac, b in seen)
    assert {b for _, _, _, b in seen} == {0, 1}


def test_refuses_bad_sets_of_states():
    fsm = _fsm()
    with pytest.raises(ValueError, match=r"^A set of states must name at least one state$"):
        fsm.active(())
    with pytest.raises(TypeError, match=r"^State must be a non-empty string, not 7$"):
        fsm.active(("A", 7))
    fsm.active(("A", "Z"))
    with pytest.raises(ValueError, match=r"^State machine 'fsm' has no state 'Z'$"):
        with fsm:
            with fsm.State("A"):
                pass
    with pytest.raises(ValueError, match=r"^A set of states is asked for after the state "
                                         r"machine 'fsm' was closed$"):
        fsm.active(("A",))
