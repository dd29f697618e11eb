#!/usr/bin/env python3
"""A far host behind a slow link, for the diagnostics tests: a TUN device
whose every IPv4 ICMP echo request is answered after DELAY milliseconds.
This kernel has no netem qdisc, so the delay is made here, exactly.

Usage: delay_host.py TUN DELAY_MS

Creates the TUN device TUN in the current network namespace (run it with
`ip netns exec`), prints READY, and answers until its input closes. The
test gives the device its address and route with `ip`: packets routed
into it reach this process, and the answers go back as from the address
they were sent to.
"""

import fcntl
import os
import select
import struct
import sys
import threading

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def reply_to(packet):
    """The echo reply to an IPv4 echo request, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    header = (packet[0] & 0x0F) * 4
    icmp = bytearray(packet[header:])
    if icmp[0] != 8:
        return None
    icmp[0] = 0
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    ip = bytearray(packet[:header])
    ip[12:16], ip[16:20] = packet[16:20], packet[12:16]
    ip[8] = 64
    ip[10:12] = b"\0\0"
    ip[10:12] = struct.pack("!H", checksum(bytes(ip)))
    return bytes(ip) + bytes(icmp)


def main():
    name, delay = sys.argv[1], int(sys.argv[2]) / 1000.0
    tun = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    print("READY", flush=True)
    lock = threading.Lock()

    def send(data):
        with lock:
            os.write(tun, data)

    while True:
        ready, _, _ = select.select([tun, sys.stdin], [], [])
        if sys.stdin in ready and not sys.stdin.readline():
            return
        if tun in ready:
            answer = reply_to(os.read(tun, 65535))
            if answer is not None:
                threading.Timer(delay, send, [answer]).start()


if __name__ == "__main__":
    main()
