"""The NIST CAVP GCM vectors shipped in ``cryptography_vectors`` (96-bit IV entries only)."""

import os
from dataclasses import dataclass

import cryptography_vectors


FILES = ("gcmEncryptExtIV128.rsp", "gcmEncryptExtIV256.rsp", "gcmDecrypt128.rsp",
         "gcmDecrypt256.rsp")


@dataclass(frozen=True)
class Vector:
    file: str
    section: int        # index of the [Keylen/IVlen/PTlen/AADlen/Taglen] group in the file
    count: int
    key: bytes
    iv: bytes
    pt: bytes           # None for a decrypt vector marked FAIL
    aad: bytes
    ct: bytes
    tag: bytes
    fail: bool

    @property
    def decrypt(self):
        return "Decrypt" in self.file

    @property
    def name(self):
        return f"{self.file}:{self.section}:{self.count}"


def path(name):
    return os.path.join(os.path.dirname(cryptography_vectors.__file__), "ciphers", "AES", "GCM",
                        name)


def load(name):
    """Every vector of ``name`` whose IV is 96 bits."""
    vectors, params, entry, section = [], {}, None, -1

    def flush():
        if entry is not None and params.get("IVlen") == "96":
            vectors.append(Vector(
                file=name, section=section, count=int(entry["Count"]),
                key=bytes.fromhex(entry["Key"]), iv=bytes.fromhex(entry["IV"]),
                pt=None if entry.get("FAIL") else bytes.fromhex(entry.get("PT", "")),
                aad=bytes.fromhex(entry["AAD"]), ct=bytes.fromhex(entry["CT"]),
                tag=bytes.fromhex(entry["Tag"]), fail=bool(entry.get("FAIL"))))

    with open(path(name)) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                flush()
                entry = None
                key, _, value = line[1:-1].partition(" = ")
                if key == "Keylen":
                    section += 1
                params[key] = value
            elif line.startswith("Count = "):
                flush()
                entry = {"Count": line.split(" = ")[1]}
            elif line == "FAIL":
                entry["FAIL"] = True
            elif " = " in line or line.endswith(" ="):
                key, _, value = line.partition(" =")
                entry[key] = value.strip()
    flush()
    return vectors
