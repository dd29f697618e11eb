#!/usr/bin/env python3
"""A small authoritative DNS server for the NSLookup tests (standard
library only): answers A and AAAA for the names it is given, NXDOMAIN for
others, and nothing at all for names starting with "silent".

Usage: dns_server.py ADDRESS PORT NAME=ADDRESS[,ADDRESS...]...

Prints READY once bound, serves until its input closes.
"""

import ipaddress
import select
import socket
import struct
import sys


def name_at(data, offset):
    labels = []
    while True:
        length = data[offset]
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        labels.append(data[offset : offset + length].decode("ascii"))
        offset += length


def encode(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode("ascii")
    return out + b"\0"


def answer(query, zone):
    ident, _flags, qdcount = struct.unpack("!HHH", query[:6])
    if qdcount != 1:
        return None
    name, end = name_at(query, 12)
    qtype, qclass = struct.unpack("!HH", query[end : end + 4])
    question = query[12 : end + 4]
    if name.lower().startswith("silent"):
        return None
    addresses = zone.get(name.lower())
    if addresses is None:
        # Response, authoritative, recursion desired copied, NXDOMAIN.
        return struct.pack("!HHHHHH", ident, 0x8503, 1, 0, 0, 0) + question
    wanted = 4 if qtype == 1 else 6 if qtype == 28 else None
    records = b""
    count = 0
    for address in addresses:
        if address.version != wanted:
            continue
        data = address.packed
        records += encode(name) + struct.pack("!HHIH", qtype, qclass, 60, len(data)) + data
        count += 1
    return struct.pack("!HHHHHH", ident, 0x8500, 1, count, 0, 0) + question + records


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    zone = {}
    for entry in sys.argv[3:]:
        name, values = entry.split("=", 1)
        zone[name.lower()] = [ipaddress.ip_address(v) for v in values.split(",")]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((address, port))
    print("READY", flush=True)
    while True:
        ready, _, _ = select.select([server, sys.stdin], [], [])
        if sys.stdin in ready and not sys.stdin.readline():
            return
        if server in ready:
            query, peer = server.recvfrom(4096)
            try:
                reply = answer(query, zone)
            except (IndexError, struct.error, UnicodeDecodeError):
                reply = None
            if reply is not None:
                server.sendto(reply, peer)


if __name__ == "__main__":
    main()
