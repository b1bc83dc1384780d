"""The ESP datapath in gateware (RFC 4303 with AES-GCM, RFC 4106, and AES-GMAC, RFC 4543).

* :mod:`.layouts`: the stream payloads (packet beats, the tag in ``tuser``, tag-stream beats);
* :mod:`.buffer`: the packet buffer (one whole packet, byte-addressed 16-byte reads and writes);
* :mod:`.inbound`: :class:`~.inbound.InboundEsp`, the inbound datapath;
* :mod:`.outbound`: :class:`~.outbound.OutboundEsp`, the outbound datapath;
* :mod:`.arbiter`: the two sharing the SA table's slot port.

The golden model is :class:`ipchan.sw.esp.datapath.EspDatapathModel`; the gateware agrees with it
packet for packet and tag for tag (``tests/esp_hw``).
"""
