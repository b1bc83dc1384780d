"""AES-GCM and GMAC gateware (NIST SP 800-38D, RFC 4106, RFC 4543) in two profiles.

* :mod:`.tables` -- AES constants derived from FIPS-197.
* :mod:`.aes` -- the AES forward cipher with on-the-fly key expansion (iterative and pipelined).
* :mod:`.ghash` -- GHASH multipliers (digit-serial and pipelined with powers of H).
* :mod:`.gcm` -- the GCM/GMAC core with stream interfaces.

See ``docs/crypto.md`` for the design notes.
"""
