"""A state machine with one flip-flop per state, written like Amaranth's ``m.FSM``.

Amaranth's FSM keeps its state in a binary-encoded register. Every transition then decodes that
register (two LUT4 levels for six bits), combines it with the transition's conditions, and the
state register's clock enable is an OR over all of them: on a sequencer of sixty states that was
ten LUT4 levels, and it set the clock of the iCE40 build. Here each state is a flip-flop, so a
transition is the state's own bit and its conditions, and a state's next value is an OR over only
the states that enter it.

The behaviour is the same as ``m.FSM``'s: ``fsm.next = "NAME"`` inside ``with fsm.State(...)``
under any ``m.If``, and the last assignment that applies wins, as with ``m.next``::

    with OneHotFSM(m, init="IDLE", name="seq") as fsm:
        with fsm.State("IDLE"):
            with m.If(start):
                fsm.next = "RUN"
        with fsm.State("RUN"):
            fsm.next = "IDLE"

A signal that many states drive (a memory's address or write data) can be driven with
``fsm.assign(signal, value)`` instead of ``m.d.comb``: the states' values are then combined as
an AND-OR over the states, not as the chain of priority multiplexers that a ``m.d.comb``
assignment in each state's ``m.If`` becomes (synthesis cannot know that only one state is
active). Within one state the last assignment that applies wins, as usual; where no state
assigns it, the signal is zero.

The transitions and those signals are built when the ``with`` block ends. A state may be named
by ``fsm.next`` before its body, but every state named must have one.
"""

from contextlib import contextmanager

from amaranth.hdl import Const, Signal


__all__ = ["OneHotFSM"]


class OneHotFSM:
    """A one-hot state machine in module ``m``, clocked by ``domain``.

    Parameters
    ----------
    m : :class:`~amaranth.hdl.Module`
        The module the state flip-flops and transitions are added to.
    init : str
        The state after reset (its flip-flop is the only one that resets to 1).
    name : str
        Prefix of the state flip-flops' names (``{name}_{STATE}``), as seen in waveforms.
    domain : str
        The clock domain of the state flip-flops.
    """

    def __init__(self, m, *, init, name="fsm", domain="sync"):
        for arg, value in (("Initial state", init), ("Name", name), ("Domain", domain)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{arg} must be a non-empty string, not {value!r}")
        self._m = m
        self._init = init
        self._name = name
        self._domain = domain
        self._bits = {}         # state -> its flip-flop
        self._bodies = []       # states with a body, in order
        self._go = {}           # state -> {target: this clock's transition to target}
        self._current = None
        self._closed = False
        self._outputs = {}      # id(signal) -> (signal, domain, {state: (enable, value)})
        self._active = []       # (flip-flop, states) from active()
        self.bit(init)

    def bit(self, state):
        """The flip-flop of ``state``: 1 while the machine is in it."""
        if not isinstance(state, str) or not state:
            raise TypeError(f"State must be a non-empty string, not {state!r}")
        if state not in self._bits:
            if self._closed:
                raise ValueError(f"State {state!r} is named after the state machine "
                                 f"{self._name!r} was closed")
            self._bits[state] = Signal(name=f"{self._name}_{state}",
                                       init=int(state == self._init))
        return self._bits[state]

    @contextmanager
    def State(self, state):
        """The body of ``state``: what is inside applies while the machine is in it."""
        if self._closed:
            raise ValueError(f"State {state!r} is defined after the state machine "
                             f"{self._name!r} was closed")
        if self._current is not None:
            raise ValueError(f"State {state!r} is defined inside state {self._current!r}")
        if state in self._bodies:
            raise ValueError(f"State {state!r} is defined twice")
        bit = self.bit(state)
        self._bodies.append(state)
        self._go[state] = {}
        self._current = state
        try:
            with self._m.If(bit):
                yield
        finally:
            self._current = None

    @property
    def next(self):
        raise AttributeError("The next state can only be assigned")

    @next.setter
    def next(self, target):
        if self._current is None:
            raise ValueError(f"The next state ({target!r}) is assigned outside a state")
        self.bit(target)
        go = self._go[self._current]
        if target not in go:
            go[target] = Signal(name=f"{self._name}_{self._current}_to_{target}")
        # Comb flags, so the last assignment wins as ``m.next``'s does: a later one clears the
        # flags the earlier ones set. Within one state this is logic of that state's
        # conditions only, which synthesis simplifies (an If and its Else never both apply).
        self._m.d.comb += [flag.eq(t == target) for t, flag in go.items()]

    @property
    def current(self):
        """The state being defined (``None`` outside a state body)."""
        return self._current

    def active(self, states, *, name=None):
        """A flip-flop that is 1 exactly while the machine is in one of ``states``: computed
        from the states' next values, so it is as early as the state flip-flops themselves and
        needs no decode where it is used."""
        if self._closed:
            raise ValueError(f"A set of states is asked for after the state machine "
                             f"{self._name!r} was closed")
        states = tuple(states)
        if not states:
            raise ValueError("A set of states must name at least one state")
        for state in states:
            if not isinstance(state, str) or not state:
                raise TypeError(f"State must be a non-empty string, not {state!r}")
        flag = Signal(name=name or f"{self._name}_active_{len(self._active)}",
                      init=int(self._init in states))
        self._active.append((flag, states))
        return flag

    def assign(self, signal, value, *, domain="comb"):
        """Drive ``signal`` with ``value`` from the state being defined: in this clock
        (``domain="comb"``), or at the next edge of the state machine's clock
        (``domain="sync"``; a register that keeps its value where no state assigns it)."""
        if self._current is None:
            raise ValueError(f"Signal {signal!r} is assigned outside a state")
        if not isinstance(signal, Signal):
            raise TypeError(f"Only a Signal can be assigned, not {signal!r}")
        if domain not in ("comb", "sync"):
            raise ValueError(f"Domain must be 'comb' or 'sync', not {domain!r}")
        # Keyed by identity: a Signal is not hashable (== builds an expression).
        _, first_domain, per_state = self._outputs.setdefault(id(signal), (signal, domain, {}))
        if domain != first_domain:
            raise ValueError(f"Signal {signal!r} is assigned in domain {domain!r} here and in "
                             f"{first_domain!r} before")
        if self._current not in per_state:
            per_state[self._current] = (
                Signal(name=f"{signal.name}_in_{self._current}"),
                Signal(signal.shape(), name=f"{signal.name}_in_{self._current}_value"))
        enable, held = per_state[self._current]
        self._m.d.comb += [enable.eq(1), held.eq(value)]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            return False
        self._close()
        return False

    def _close(self):
        missing = [state for state in self._bits if state not in self._bodies]
        if missing:
            raise ValueError(f"State machine {self._name!r} names states without a body: "
                             + ", ".join(repr(s) for s in missing))
        self._closed = True
        sync = self._m.d[self._domain]
        next_values = {}
        for state, bit in self._bits.items():
            leave = [flag for target, flag in self._go[state].items() if target != state]
            enter = [go[state] for source, go in self._go.items()
                     if source != state and state in go]
            value = _or_tree([bit & ~_or_tree(leave), *enter])
            sync += bit.eq(value)
            next_values[state] = value
        for flag, states in self._active:
            unknown = [state for state in states if state not in self._bits]
            if unknown:
                raise ValueError(f"State machine {self._name!r} has no state " +
                                 ", ".join(repr(s) for s in sorted(unknown)))
            sync += flag.eq(_or_tree([next_values[state] for state in states]))
        for signal, domain, per_state in self._outputs.values():
            # Each state's value is gated by its own enable, which is only ever high while
            # that state is, so at most one term is not zero.
            value = _or_tree([held & enable.replicate(len(held))
                              for enable, held in per_state.values()])
            any_enable = _or_tree([enable for enable, _ in per_state.values()])
            if domain == "comb":
                self._m.d.comb += signal.eq(value)
            else:
                with self._m.If(any_enable):
                    self._m.d[self._domain] += signal.eq(value)


def _or_tree(terms):
    # A balanced OR: written as a chain, synthesis (ABC) kept much of the chain's depth.
    if not terms:
        return Const(0)
    while len(terms) > 1:
        terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                 for i in range(0, len(terms), 2)]
    return terms[0]
