#!/usr/bin/env python3
"""How much a wake-up between two processes costs on this machine. Not a test: it measures.

Two processes ping-pong one byte over a pair of pipes; every round trip is two sleeps and two
wake-ups, which on a VM are two cross-vCPU interrupts. Prints the round-trip time and the CPU
the parent spent per round trip. On the 2-vCPU bench VM this moves 2x within minutes, and the
cluster benchmarks' system time moves with it: run it before and after a benchmark to see the
VM's phase.

usage: scripts/wake-probe.py [--round-trips 20000]
"""
import argparse, os, time


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--round-trips", type=int, default=20000)
    n = ap.parse_args().round_trips
    to_child, from_parent = os.pipe()
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            os.read(to_child, 1)
            os.write(from_child, b"x")
        os._exit(0)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        os.write(from_parent, b"x")
        os.read(to_parent, 1)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    os.waitpid(pid, 0)
    print(f"wake-probe: {n / wall:.0f} round trips/s, {wall / n * 1e6:.1f} us per round trip,"
          f" {cpu / n * 1e6:.1f} us of CPU per round trip in one process")


if __name__ == "__main__":
    main()
