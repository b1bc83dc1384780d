"""``open_engine``: the backends by name, and the refusals that name what was wrong. (A board on
the serial backend is driven end to end in ``tests/boards/test_board_link_sim.py``.)"""

import pytest

from ipchan.hw.contract import EngineParams
from ipchan.sw.backends import BACKENDS, ESP_BACKENDS, open_engine
from ipchan.sw.link import LinkError


def test_backend_names():
    assert BACKENDS == ("verilator", "model", "serial")
    assert ESP_BACKENDS == ("verilator", "model")


def test_model_backend_takes_params():
    with open_engine("model", EngineParams(n_entries=8)) as engine:
        assert engine.params == EngineParams(n_entries=8)


def test_serial_needs_a_port():
    with pytest.raises(ValueError, match=r"^The serial backend needs a port: a device such as "
                                         r"/dev/ttyUSB1 or a pyserial URL"):
        open_engine("serial")
    with pytest.raises(TypeError, match=r"^Port must be a string, not 5$"):
        open_engine("serial", port=5)


def test_serial_has_no_esp_datapath():
    with pytest.raises(ValueError, match=r"the serial backend has no ESP datapath, so the ESP "
                                         r"profile must be None, not 'compact'$"):
        open_engine("serial", esp="compact", port="/dev/ttyUSB1")


@pytest.mark.parametrize("option", ["port", "baudrate", "timeout"])
def test_serial_options_belong_to_the_serial_backend(option):
    with pytest.raises(ValueError, match=rf"^The {option} is for the serial backend, not 'model'$"):
        open_engine("model", **{option: "/dev/ttyUSB1" if option == "port" else 1})


def test_serial_names_a_port_that_will_not_open():
    with pytest.raises(LinkError, match=r"^Cannot open serial port '/dev/ipchan-no-such-board' "
                                        r"at 115200 baud"):
        open_engine("serial", port="/dev/ipchan-no-such-board", baudrate=115200)


def test_serial_checks_the_baud_rate():
    with pytest.raises(ValueError, match=r"^Baud rate must be a positive integer, not 0$"):
        open_engine("serial", port="/dev/ttyUSB1", baudrate=0)
