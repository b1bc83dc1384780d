"""Verilog generation smoke test: the compact core converts, and its S-boxes stay memories (so
Yosys can put them in block RAM) rather than being flattened into logic."""

import re

import pytest
from amaranth.back import verilog

from ipchan.hw.crypto.gcm import GCMCore


@pytest.mark.synth
def test_compact_core_converts_with_memory_sboxes():
    core = GCMCore("compact")
    text = verilog.convert(core, name="gcm_compact")
    assert "module gcm_compact" in text
    # 10 S-box memories of 256 bytes (16 state + 4 key lookups, two per memory).
    memories = re.findall(r"reg \[7:0\] (\S+) \[255:0\];", text)
    assert len(memories) == 10, memories
    # ... marked for block RAM: Yosys maps small ROMs to logic unless told.
    assert text.count('(* ram_style = "block" *)') == 10
