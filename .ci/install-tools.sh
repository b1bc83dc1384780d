#!/usr/bin/env bash
# System tools that PyPI does not carry: Icarus Verilog (the second simulator) and a C++ compiler for
# Verilator's output. Installed with apt-get when missing and we are root; otherwise we say what to do.
set -euo pipefail
missing=()
command -v iverilog >/dev/null 2>&1 || missing+=(iverilog)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
# Verilator's FST waveform writer (IPCHAN_WAVES=1) needs lz4's header.
[ -e /usr/include/lz4.h ] || missing+=(liblz4-dev)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ipchan: installing ${missing[*]} with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    echo "ipchan: missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]}) and run make again" >&2
    exit 1
fi
