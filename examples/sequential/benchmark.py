"""Example 1: the sequential baseline.

Sleeps ``delay`` seconds ``n`` times in a plain loop and reports the overhead over the
expected time; the distributed examples are measured against it.

    python benchmark.py            # 100, 1000 and 5000 iterations of 10 ms (about 61 s)
    python benchmark.py 100 1000   # only the counts given
"""
import sys
import time


def main(n, delay):
    print('running - iterations: %d - delay: %.3f' % (n, delay))

    start = time.time()

    for i in range(n):
        time.sleep(delay)

    m = (time.time() - start) * 1000
    expected = n * delay * 1000
    overhead = m / expected - 1.0
    print('expected execution time: %.1f' % expected)
    print('sequential execution took: %.1f milliseconds' % m)
    print('overhead: %.1f%%' % (overhead * 100.0))


if __name__ == '__main__':
    counts = [int(arg) for arg in sys.argv[1:]] or [100, 1000, 5000]
    for count in counts:
        main(count, .01)
