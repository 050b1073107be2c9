"""Hold (and optionally keep growing) real, touched memory until killed; lifetime is bounded."""
from __future__ import annotations

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument('--mib', type=int, default=0)
parser.add_argument('--grow-mib', type=int, default=0)
parser.add_argument('--every', type=float, default=0.25)
parser.add_argument('--max-mib', type=int, default=256)
parser.add_argument('--lifetime', type=float, default=300)
parser.add_argument('--pidfile', required=True)
args = parser.parse_args()


def block(mib: int) -> bytearray:
    """``mib`` MiB with every page touched, without a temporary copy."""
    buf = bytearray(mib << 20)
    buf[::4096] = b'\x01' * ((mib << 20) // 4096)
    return buf


held = [block(args.mib)] if args.mib else []
with open(args.pidfile + '.tmp', 'w', encoding='ascii') as handle:
    handle.write('%d\n' % os.getpid())
os.rename(args.pidfile + '.tmp', args.pidfile)
total = args.mib
deadline = time.monotonic() + args.lifetime
while time.monotonic() < deadline:
    if args.grow_mib and total + args.grow_mib <= args.max_mib:
        held.append(block(args.grow_mib))
        total += args.grow_mib
    time.sleep(args.every if args.grow_mib else 1)
