#!/usr/bin/env python3
"""The target of sampler_bench.py's per-sample cost: paired chunks of work,
one with the sampler's signal blocked and one without.

    astrace record --rate 10000 [--native] -- python3 bench/apps/sample_cost.py RATE PAIRS DEPTH ITERS

Each pair runs the same pure-Python loop (ITERS iterations, DEPTH Python
frames deep) twice, in alternating order: once with the sampler's signal
(SIGPROF, or $SAMPLE_COST_SIGNAL) blocked for this thread, so that no sample
is taken, and once with it delivered. Whole-process runs compared against each
other differ by several percent on this kind of machine (the CPU's speed drifts
between runs); two neighbouring 20 ms chunks of one run do not. The extra wall
time of the sampled chunk, divided by the samples it got (RATE x its length),
is the cost of one sample: signal delivery, the handler's stack walk and the
ring write. A sample left pending while the signal was blocked is taken after
the chunk is timed.

Prints one line: "sample cost: <median ns> ns per sample over N pairs
(chunk <ms> ms, depth D)". Under --no-sampler the same measurement gives the
noise floor (close to 0).
"""
import os
import signal
import statistics
import sys
import time


def work(iterations):
    total = 0
    for i in range(iterations):
        total += i
    return total


def at_depth(depth, iterations):
    if depth <= 1:
        return work(iterations)
    return at_depth(depth - 1, iterations)


def timed_chunk(depth, iterations, blocked, signo):
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
    start = time.perf_counter_ns()
    at_depth(depth, iterations)
    elapsed = time.perf_counter_ns() - start
    if blocked:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signo})
    return elapsed


def main():
    if len(sys.argv) != 5:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    rate, pairs, depth, iterations = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    signo = int(os.environ.get("SAMPLE_COST_SIGNAL", int(signal.SIGPROF)))
    per_sample, chunk = [], []
    for pair in range(pairs + 2):  # the first two pairs warm up
        sampled_first = pair % 2 == 0
        first = timed_chunk(depth, iterations, not sampled_first, signo)
        second = timed_chunk(depth, iterations, sampled_first, signo)
        sampled, unsampled = (first, second) if sampled_first else (second, first)
        if pair < 2:
            continue
        samples = rate * sampled / 1e9
        per_sample.append((sampled - unsampled) / samples)
        chunk.append(sampled)
    print(f"sample cost: {statistics.median(per_sample):.0f} ns per sample over {pairs} pairs "
          f"(chunk {statistics.median(chunk) / 1e6:.1f} ms, depth {depth})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
