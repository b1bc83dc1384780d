"""Stream payloads of the ESP datapath, built from the contract.

Packets travel in 16-byte beats, AXI4-Stream style: byte ``k`` of a beat is ``data[8k:8k+8]``
(the first byte of the packet is byte 0 of its first beat), ``keep`` has one bit per byte (all
ones except on the last beat, where it is a run of ones from byte 0) and ``last`` marks the last
beat. Data leaving the engine carries its tag (:data:`TagLayout`) in ``user`` on every beat.
"""

from amaranth.lib import data

from .. import contract


__all__ = ["BEAT_BYTES", "TagLayout", "PacketBeat", "TaggedBeat", "TagBeat"]

#: Bytes per stream beat (and per GCM block).
BEAT_BYTES = 16

#: The tag, field for field as :data:`ipchan.hw.contract.TAG_FIELDS` (least significant first),
#: so its value is :func:`ipchan.hw.contract.pack_tag` of the same fields.
TagLayout = data.StructLayout({name: width for name, width, _ in contract.TAG_FIELDS})

#: A beat of a packet coming in (``s_axis``).
PacketBeat = data.StructLayout({"data": 8 * BEAT_BYTES, "keep": BEAT_BYTES, "last": 1})

#: A beat of a packet handed out (``m_axis_in_data``, ``m_axis_out_data``), with its tag in ``user``.
TaggedBeat = data.StructLayout({"data": 8 * BEAT_BYTES, "keep": BEAT_BYTES, "last": 1,
                                "user": TagLayout})

#: One beat per input packet (``m_axis_in_tag``, ``m_axis_out_tag``): the tag, then :data:`contract.TAG_BEAT_FIELDS`.
TagBeat = data.StructLayout({"tag": TagLayout,
                             **{name: width for name, width, _ in contract.TAG_BEAT_FIELDS}})
