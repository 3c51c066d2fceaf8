"""The client's address behind reverse proxies: ``X-Forwarded-For`` is believed only when the
peer is a configured proxy (``DMP_TRUSTED_PROXIES``), and then only up to the first address
that is not one. Anyone else can write that header: from an untrusted peer it is ignored."""

from __future__ import annotations

import functools
import ipaddress

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.cache
def parse_networks(spec: str) -> tuple[Network, ...]:
    """``10.0.0.1, 192.168.0.0/16, ::1``: addresses and networks (validated by the settings)."""
    return tuple(
        ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip()
    )


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in n for n in networks)


def client_address(peer: str | None, forwarded_for: str | None, trusted: str) -> str:
    """The address to count and audit a request under."""
    address = peer or "unknown"
    networks = parse_networks(trusted)
    if not networks or not forwarded_for or not _trusted(address, networks):
        return address
    # Right to left: each trusted proxy appended the address it received the request from.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, networks):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return address  # a malformed hop: count the request under the proxy
    return address
