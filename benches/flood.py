#!/usr/bin/env python3
"""Handshake flood sender for benches/flood.sh: WireGuard-shaped datagrams as fast as one
Python loop can send them, to one UDP port on loopback (inside the bench's own namespace).

Modes:
  garbage   datagrams that are no WireGuard message at all (type 0, random length)
  badmac    148-byte handshake initiations whose mac1 is wrong (random bytes)
  validmac  148-byte initiations with a correct mac1 for the server's public key and random
            ephemeral/static/timestamp fields: they pass the mac1 check and cost the
            responder its X25519 work (like initiations from random keys), without a cookie

Prints "SENT <datagrams> <seconds>" on stdout when done. Refuses any target but loopback.
"""
import argparse
import base64
import hashlib
import ipaddress
import os
import socket
import sys
import time

POOL = 4096  # distinct datagrams, sent round robin


def mac1_key(server_public: bytes) -> bytes:
    # WireGuard: mac1 key = HASH(LABEL_MAC1 || responder's static public key)
    return hashlib.blake2s(b"mac1----" + server_public).digest()


def pool(mode: str, server_public: bytes):
    out = []
    key = mac1_key(server_public)
    for _ in range(POOL):
        if mode == "garbage":
            n = 16 + os.urandom(1)[0] % 180
            out.append(b"\x00" + os.urandom(n - 1))
        elif mode == "badmac":
            out.append(b"\x01\x00\x00\x00" + os.urandom(144))
        elif mode == "validmac":
            msg = b"\x01\x00\x00\x00" + os.urandom(112)
            mac1 = hashlib.blake2s(msg, key=key, digest_size=16).digest()
            out.append(msg + mac1 + bytes(16))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", required=True, choices=["garbage", "badmac", "validmac"])
    p.add_argument("--target", required=True, help="IP:PORT, loopback only")
    p.add_argument("--source", default="127.0.0.2", help="loopback address to send from")
    p.add_argument("--server-key", required=True, help="the appliance's public key, base64")
    p.add_argument("--seconds", type=float, required=True)
    a = p.parse_args()
    host, port = a.target.rsplit(":", 1)
    if not ipaddress.ip_address(host).is_loopback or not ipaddress.ip_address(a.source).is_loopback:
        sys.exit("flood.py: target and source must be loopback addresses")
    server_public = base64.b64decode(a.server_key)
    if len(server_public) != 32:
        sys.exit("flood.py: the server key must be 32 bytes in base64")
    datagrams = pool(a.mode, server_public)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((a.source, 0))
    dst = (host, int(port))
    sent = 0
    start = time.monotonic()
    end = start + a.seconds
    send = s.sendto
    while True:
        for d in datagrams:
            try:
                send(d, dst)
            except OSError:
                pass  # the receiver's buffer is full: that is the point
        sent += len(datagrams)
        if time.monotonic() >= end:
            break
    print(f"SENT {sent} {time.monotonic() - start:.2f}")


if __name__ == "__main__":
    main()
