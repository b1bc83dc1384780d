"""Text output of the LD, in the manner of ``ip xfrm state``."""

__all__ = ["format_latch"]


def format_latch(d):
    """One latch (the dictionary of :meth:`LatchInfo.as_dict`) as a few indented lines."""
    t = d["tuple"]
    if d["kind"] == "listener":
        where = f"proto {t['proto']} {t['local_addr']}:{t['local_port']} (listener)"
    else:
        where = (f"proto {t['proto']} {t['local_addr']}:{t['local_port']} "
                 f"<-> {t['remote_addr']}:{t['remote_port']}")
    lines = [f"latch {d['handle']} {d['state']} {where}"]
    if d["peer"]:
        auth = d["peer"]["auth"]
        extra = f" anchor {auth['trust_anchor']}" if auth.get("trust_anchor") else ""
        lines.append(f"\tpeer {d['peer']['id_type']}:{d['peer']['value']} auth {auth['method']}{extra}")
    if d["local_id"]:
        lines.append(f"\tlocal {d['local_id']['id_type']}:{d['local_id']['value']}")
    if d["bypass"]:
        lines.append("\tbypass (section 3)")
    p = d["protection"] or d["requested_protection"]
    if p:
        label = "protection" if d["protection"] else "requested"
        lines.append(f"\t{label} {p['algorithm']} aes-{p['key_bits']} icv {p['icv_len']} "
                     f"{'esn ' if p['esn'] else ''}replay-window {p['replay_window']} {p['mode']} "
                     f"({p['type']})")
    if d["nat"]:
        n = d["nat"]
        lines.append(f"\tnat peer-behind {str(n['peer_behind_nat']).lower()} outer "
                     f"{n['peer_outer_addr']}:{n['peer_outer_port']} inner {n['peer_inner_addr']}")
    for s in d["sas"]:
        lines.append(f"\tsa {s['sa_id']} in spi {s['inbound_spi']:#010x} index {s['inbound_index']} "
                     f"gen {s['inbound_generation']} out spi {s['outbound_spi']:#010x} "
                     f"index {s['outbound_index']} gen {s['outbound_generation']}")
    v = f"\tversion created {d['created_version']}"
    if d["established_version"] is not None:
        v += f" established {d['established_version']}"
    v += f" last {d['version']}"
    if d["listener"] is not None:
        v += f" listener {d['listener']}"
    if d["optional"]:
        v += f" optional {d['optional']}"
    if d["preserved"]:
        v += " preserved"
    lines.append(v)
    if d["reason"]:
        lines.append(f"\treason {d['reason']}")
    return "\n".join(lines)
