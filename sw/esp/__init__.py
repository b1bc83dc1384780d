"""The ESP datapath's golden model and the host-side tools around it (RFC 4303, 4106, 4543).

* :mod:`.packet`: strict IPv4/IPv6 header parsing and building;
* :mod:`.replay`: the anti-replay window and ESN inference;
* :mod:`.datapath`: :class:`~.datapath.EspDatapathModel`, the executable specification of the
  engine's inbound and outbound ESP processing and its tags;
* :mod:`.sas_yaml`: the SAS.yaml format, installed through the driver;
* :mod:`.pcap`: a small pcap reader and writer;
* :mod:`.cli`: ``ipchan esp process``.
"""
