"""Register access to a Verilator simulation of the engine running as a separate process.

:class:`VerilatorTransport` builds the simulation (or takes it from the cache, see
:mod:`ipchan.sim.verilator_build`), starts it on a Unix socket in a private directory and talks to
it; :class:`SocketTransport` connects to a simulation somebody else started
(``python -m ipchan.sim.verilator_build --serve SOCKET``). Both speak the link protocol of
:mod:`ipchan.sw.link`, the same frames as a board's UART bridge.

Both offer ``read(addr) -> int``, ``write(addr, value)``, ``reset()``, ``cycles() -> int`` and
``close()``, plus the pipelined ``read_many`` and ``write_many``, and are context managers. A
simulation of an engine built with the ESP datapath (``VerilatorTransport(params, esp=...)``)
also runs packets: ``process_packet(direction, data, sa_index) -> (tag, bytes or None)`` and the
pipelined ``process_packets``. An
AXI4-Lite error response raises :exc:`~ipchan.sw.link.BusError`; a simulation that dies raises
:exc:`SimulationError`, naming its exit code and the end of its stderr.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from itertools import count
from pathlib import Path

from .link import LinkClient, LinkClosed, LinkError
from .transport import check_packet

#: Progress lines go to whatever ``sys.stderr`` is when a transport is made.
STDERR = "stderr"


__all__ = ["SimulationError", "SocketTransport", "VerilatorTransport"]


class SimulationError(LinkError):
    """The simulation process failed or went away."""


class SocketTransport:
    """The link protocol over a connected Unix-domain socket.

    Parameters
    ----------
    path : str or path
        The socket a simulation listens on.
    timeout : float
        Seconds to wait for any one answer before giving up.
    """

    def __init__(self, path, *, timeout=60.0):
        self._path = str(path)
        self._timeout = timeout
        self._sock = None
        self._connect_once()

    def _connect_once(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self._path)
        except OSError as exc:
            sock.close()
            raise SimulationError(f"Cannot connect to a simulation at {self._path}: "
                                  f"{exc.strerror or exc}") from None
        self._attach(sock)

    def _attach(self, sock):
        sock.settimeout(self._timeout)
        self._sock = sock
        self._rx = bytearray()
        self._link = LinkClient(self._send, self._recv_exact)

    # Byte movement. Errors become SimulationError, with what the subclass knows of the process.

    def _describe_failure(self, what):
        return f"The simulation at {self._path} closed the connection {what}"

    def _send(self, data):
        if self._sock is None:
            raise ValueError("Transport is closed")
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            raise SimulationError(self._describe_failure("while we were sending a request")) \
                from None

    def _recv_exact(self, n):
        if self._sock is None:
            raise ValueError("Transport is closed")
        # Answers to a pipelined batch arrive together: take them from the socket in big pieces.
        while len(self._rx) < n:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise SimulationError(f"The simulation at {self._path} did not answer within "
                                      f"{self._timeout} s") from None
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise SimulationError(self._describe_failure("before answering")) from \
                    LinkClosed("end of stream")
            self._rx += chunk
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    # The transport interface.

    def read(self, addr):
        """Read the 32-bit register at byte address ``addr``."""
        return self._link.read(addr)

    def write(self, addr, value):
        """Write the 32-bit ``value`` to the register at byte address ``addr``."""
        self._link.write(addr, value)

    def read_many(self, addrs):
        """Read several registers in one pipelined exchange; returns their values in order."""
        return self._link.read_many(addrs)

    def write_many(self, pairs):
        """Write several ``(addr, value)`` pairs in order in one pipelined exchange."""
        self._link.write_many(pairs)

    def transact(self, requests):
        """Raw pipelined requests, see :meth:`ipchan.sw.link.LinkClient.transact`."""
        return self._link.transact(requests)

    def reset(self):
        """Hold the engine in reset for :data:`ipchan.sw.link.RESET_CYCLES` clock cycles."""
        self._link.reset()

    def process_packet(self, direction, data, sa_index=None):
        """Run one packet through the simulation's ESP datapath (inbound, or outbound through
        the SA in slot ``sa_index``): ``(tag dict, bytes handed up or None)``. A simulation
        without the datapath raises :exc:`~ipchan.sw.link.ProtocolError` (it answers UNKNOWN)."""
        (answer,) = self.process_packets([(direction, data, sa_index)])
        return answer

    def process_packets(self, requests):
        """:meth:`process_packet` for each ``(direction, data, sa_index)``, pipelined: every
        request is checked first, then they go out in batches and come back in order."""
        checked = [check_packet(*req) for req in requests]
        answers = self._link.packets([(d, data, 0 if i is None else i) for d, data, i in checked])
        return [(a.tag, a.data) for a in answers]

    def cycles(self):
        """Clock cycles the simulation has run since it started."""
        return self._link.cycles()

    @property
    def path(self):
        return self._path

    @property
    def closed(self):
        return self._sock is None

    def close(self):
        """Disconnect. A simulation started without ``--keep`` exits when its client leaves."""
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return f"<{type(self).__name__} {self._path}{' closed' if self.closed else ''}>"


_instances = count()


class VerilatorTransport(SocketTransport):
    """Build (or find in the cache), start and talk to the engine's Verilator simulation.

    Parameters
    ----------
    params : :class:`ipchan.hw.contract.EngineParams` or None
        The engine to simulate (default parameters when None). Not with ``verilog``.
    esp : None, ``"compact"`` or ``"fast"``
        Build the engine with the ESP datapath of this GCM profile (its own cached build), so
        that :meth:`process_packet` works. Not with ``verilog``.
    verilog : str or None
        Simulate this Verilog (top module ``ipchan_engine``) instead of the engine.
    trace : path, True or None
        Write an FST waveform to this file (True: ``build/waves/ipchan_engine-<pid>-<n>.fst``).
        With None, the environment variable ``IPCHAN_WAVES=1`` asks for the default file.
        Tracing uses a separately cached build.
    cache_dir : path or None
        The build cache (default ``$IPCHAN_CACHE/verilator`` or ``~/.cache/ipchan/verilator``).
    timeout : float
        Seconds to wait for any one answer.
    startup_timeout : float
        Seconds the process may take to start listening.
    progress : file, callable or None
        Where progress lines (a build under way, a waveform being written) go: a file (default:
        stderr), a function called with each line, or nowhere.
    build_jobs : int or None
        Parallel compiler jobs when a build is needed (default: at most 2).
    bus_timeout : int or None
        Cycles the harness waits for the design to answer one AXI4-Lite access before it gives
        up and exits (code 3); default one million.
    verilator : :class:`ipchan.sim.verilator_build.Verilator` or None
        The Verilator to build with when a build is needed (default: the PyPI one).
    """

    def __init__(self, params=None, *, esp=None, verilog=None, trace=None, cache_dir=None,
                 timeout=60.0, startup_timeout=30.0, progress=STDERR, build_jobs=None,
                 bus_timeout=None, verilator=None):
        from ..sim import verilator_build

        if progress is STDERR:
            progress = sys.stderr
        if verilog is not None and params is not None:
            raise TypeError(f"Give either engine parameters or Verilog, not both "
                            f"(params={params!r})")
        if verilog is not None and esp is not None:
            raise TypeError(f"The ESP profile is for the engine's parameters, not for Verilog "
                            f"(esp={esp!r})")
        if trace is None and os.environ.get("IPCHAN_WAVES") == "1":
            trace = True
        if trace is True:
            trace = Path("build", "waves", f"ipchan_engine-{os.getpid()}-{next(_instances)}.fst")
        if trace is not None:
            trace = Path(trace).resolve()
            trace.parent.mkdir(parents=True, exist_ok=True)
        options = dict(trace=trace is not None, cache_dir=cache_dir, jobs=build_jobs,
                       progress=progress, verilator=verilator)
        if verilog is None:
            self.build = verilator_build.build_engine(params, esp=esp, **options)
        else:
            self.build = verilator_build.build(verilog, **options)
        self.trace_path = trace
        self._proc = None
        self._failure_reported = False
        self._sock = None
        self._timeout = timeout
        self._dir = Path(tempfile.mkdtemp(prefix="ipchan-sim-"))
        self._path = str(self._dir / "link.sock")
        self._stderr_path = self._dir / "stderr.log"
        cmd = [str(self.build.executable), self._path, "--accept-timeout", str(startup_timeout)]
        if bus_timeout is not None:
            cmd += ["--bus-timeout", str(bus_timeout)]
        if trace is not None:
            cmd += ["--trace", str(trace)]
            verilator_build.report_progress(progress, f"ipchan: writing the waveform to {trace}")
        try:
            with open(self._dir / "stdout.log", "wb") as out, open(self._stderr_path, "wb") as err:
                # A session of its own: a Ctrl-C at the terminal reaches us, and we close the
                # simulation in order instead of it dying under us.
                self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=err, start_new_session=True)
            self._wait_listening(startup_timeout)
        except BaseException:
            self._kill()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def _wait_listening(self, startup_timeout):
        deadline = time.monotonic() + startup_timeout
        delay = 0.001
        while True:
            if self._proc.poll() is not None:
                raise SimulationError(self._describe_failure("before it started listening"))
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self._path)
            except (FileNotFoundError, ConnectionRefusedError):
                sock.close()
                if time.monotonic() > deadline:
                    raise SimulationError(f"The simulation {self.build.executable} did not listen "
                                          f"on {self._path} within {startup_timeout} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            self._attach(sock)
            return

    @property
    def pid(self):
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self):
        return self._proc.returncode if self._proc is not None else None

    def _stderr_tail(self, lines=20):
        try:
            text = self._stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _exit_text(self, code):
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"was killed by {name}"
        return f"exited with code {code}"

    def _describe_failure(self, what):
        if self._proc is None:
            return super()._describe_failure(what)
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return (f"The simulation {self.build.executable} (pid {self._proc.pid}) closed the "
                    f"connection {what}, but is still running")
        self._failure_reported = True
        text = f"The simulation {self.build.executable} (pid {self._proc.pid}) " \
               f"{self._exit_text(code)} {what}"
        tail = self._stderr_tail()
        return f"{text}; the end of its stderr:\n{tail}" if tail else f"{text}; its stderr is empty"

    def close(self):
        """Disconnect, let the simulation exit (it flushes its waveform), and clean up.

        Raises :exc:`SimulationError` if the simulation did not exit cleanly.
        """
        if self._proc is None:
            return
        super().close()
        problem = None
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
            problem = "did not exit within 10 s of the client leaving and was killed"
        else:
            if code != 0:
                problem = self._exit_text(code)
        tail = self._stderr_tail()
        proc, self._proc = self._proc, None
        shutil.rmtree(self._dir, ignore_errors=True)
        if problem and not self._failure_reported:
            text = f"The simulation {self.build.executable} (pid {proc.pid}) {problem}"
            raise SimulationError(f"{text}; the end of its stderr:\n{tail}" if tail else text)

    def terminate(self):
        """Stop the simulation with SIGTERM (it exits cleanly, flushing its waveform)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def _kill(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            # Do not hide the error in flight behind a second one from the shutdown.
            try:
                self.close()
            except SimulationError:
                pass

    def __del__(self):
        if getattr(self, "_proc", None) is not None:
            warnings.warn(f"{self!r} was not closed", ResourceWarning, source=self)
            self._kill()
            shutil.rmtree(self._dir, ignore_errors=True)
            self._proc = None
