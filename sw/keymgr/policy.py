"""Reading the SPD and PAD from a YAML (or JSON) file, for the daemon and the command line.

    spd:
      - {name: lan, action: protect, local_addr: 192.0.2.1, remote_addr: 198.51.100.0/24,
         protection: {algorithm: aes-gcm-16, key_bits: 128}}
      - {name: web, action: bypass, local_addr: 192.0.2.1, proto: tcp, local_port: 80}
    pad:
      - {name: btns, id_type: public-key, pattern: "*", auth: raw-public-key,
         addresses: [198.51.100.0/24]}
"""

from pathlib import Path

import yaml

from .pad import PadEntry
from .spd import SpdEntry


__all__ = ["load_policy", "parse_policy"]


def parse_policy(data, source="policy"):
    if not isinstance(data, dict):
        raise ValueError(f"{source}: must be a mapping with 'spd' and 'pad' lists, not {data!r}")
    unknown = set(data) - {"spd", "pad"}
    if unknown:
        raise ValueError(f"{source}: unknown section(s) {', '.join(sorted(map(repr, unknown)))}")
    spd, pad = [], []
    for kind, out, cls in (("spd", spd, SpdEntry), ("pad", pad, PadEntry)):
        items = data.get(kind, [])
        if not isinstance(items, list):
            raise ValueError(f"{source}: '{kind}' must be a list, not {items!r}")
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "name" not in item:
                raise ValueError(f"{source}: {kind}[{i}] must be a mapping with a name, not {item!r}")
            item = dict(item)
            name = item.pop("name")
            try:
                out.append(cls.parse(name, **item))
            except TypeError as e:
                raise ValueError(f"{source}: {kind}[{i}] ({name!r}): {e}") from None
            except ValueError as e:
                raise ValueError(f"{source}: {kind}[{i}] ({name!r}): {e}") from None
    return spd, pad


def load_policy(path):
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    return parse_policy(data, str(path))
