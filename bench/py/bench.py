#!/usr/bin/env python3
"""The Python multiprocessing twins of the Go benchmarks in ../bench_test.go.

Each benchmark does the same work as the Go benchmark of the same name, with
two workers, and prints one line per start method it ran with:

    <name> <seconds per op>

where <name> is the Go benchmark's name without "Benchmark", followed by
"/<method>" when the start method is not fork (the default on Linux). Spawn
and PoolStart run with fork and with spawn unless --method is given; the
others run with fork.

    python3 bench.py [--time S | --reps N] [--method M]... NAME...
    python3 bench.py --check

An op is timed --reps times, or as many times as fit in --time seconds (at
least once). Pools are started and warmed up before the timing starts,
except in Spawn and PoolStart, which time a process's or a pool's whole
life. --check runs every benchmark once, small, and checks its results.

Standard library only. Keep this module's top level free of side effects:
with the spawn start method, every child imports it.
"""

import argparse
import multiprocessing
import sys
import time

# The sizes of the benchmarks, the same as in ../bench_test.go.
WORKERS = 2
MAP_ITEMS = 1_000_000
MAP_CHUNK1_ITEMS = 20_000
APPLY_ASYNC_CALLS = 50_000
IMAP_ITEMS = 200_000
IMAP_CHUNK = 1000


def square(x):
    return x * x


def incr(x):
    return x + 1


def _child(conn, x):
    conn.send(incr(x))
    conn.close()


def sum_squares(n):
    return (n - 1) * n * (2 * n - 1) // 6


# Shared state: the sizes, as in ../bench_test.go.
BIG = 256 << 20
LOCK_OPS = 20_000

_shared = {}  # objects made once in the parent, or given to a worker by its initializer


def sum_few_shm(name):
    from multiprocessing import resource_tracker, shared_memory
    shm = shared_memory.SharedMemory(name=name)
    # Attaching registers the block with this worker's resource tracker,
    # which would unlink it, under the parent's feet, when the worker ends
    # (a known Python 3.11 bug): unregister it, as the usual workaround does.
    resource_tracker.unregister(shm._name, "shared_memory")
    try:
        return sum(shm.buf[:8])
    finally:
        shm.close()


def sum_few(b):
    return sum(b[:8])


def _init_shared(lock, value, sem, rlock):
    _shared["lock"], _shared["value"] = lock, value
    _shared["sem"], _shared["rlock"] = sem, rlock


def lock_loop(n):
    lock = _shared["lock"]
    for _ in range(n):
        lock.acquire()
        lock.release()
    return n


def sem_loop(n):
    sem = _shared["sem"]
    for _ in range(n):
        sem.acquire()
        sem.release()
    return n


def rlock_loop(n):
    r = _shared["rlock"]
    for _ in range(n):
        r.acquire()
        r.acquire()
        r.release()
        r.release()
    return n


def value_loop(n):
    v = _shared["value"]
    for _ in range(n):
        with v.get_lock():
            v.value += 1
    return n


def do_shared_memory(pool):
    if "shm" not in _shared:
        from multiprocessing import shared_memory
        _shared["shm"] = shared_memory.SharedMemory(create=True, size=BIG)
    return pool.apply(sum_few_shm, (_shared["shm"].name,))


def do_big_arg(pool):
    if "big" not in _shared:
        _shared["big"] = bytes(BIG)
    return pool.apply(sum_few, (_shared["big"],))


def shared_pool(ctx):
    lock, value = ctx.Lock(), ctx.Value("q", 0)
    sem, rlock = ctx.Semaphore(1), ctx.RLock()
    pool = ctx.Pool(WORKERS, initializer=_init_shared, initargs=(lock, value, sem, rlock))
    pool.map(square, range(10), chunksize=1)
    return pool


# Lifecycle benchmarks: an op is a whole process or pool life.


def spawn_once(ctx, x):
    """Starts a process that sends back x+1 over a pipe, and joins it."""
    r, w = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(w, x))
    p.start()
    w.close()  # so that recv fails, rather than hangs, if the child dies
    try:
        v = r.recv()
    finally:
        p.join()
        r.close()
    return v


def pool_start_once(ctx, x):
    """Starts a pool of two workers, runs one task and kills the pool, as
    mp's Pool.Close does."""
    pool = ctx.Pool(WORKERS)
    try:
        return pool.apply(incr, (x,))
    finally:
        pool.terminate()
        pool.join()


# Messaging benchmarks.

QUEUE_MSGS = 200_000


def _queue_put(q, n):
    for i in range(n):
        q.put(i)


def _queue_get(q, n, out):
    s = 0
    for _ in range(n):
        s += q.get()
    out.put(s)


def queue_once(ctx, producers, consumers):
    """Sends QUEUE_MSGS small values from producer processes to consumer
    processes through one Queue; returns the sum the consumers got."""
    q, out = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=_queue_get, args=(q, QUEUE_MSGS // consumers, out)) for _ in range(consumers)]
    procs += [ctx.Process(target=_queue_put, args=(q, QUEUE_MSGS // producers)) for _ in range(producers)]
    for p in procs:
        p.start()
    total = sum(out.get() for _ in range(consumers))
    for p in procs:
        p.join()
    return total


def _pipe_echo(conn):
    while True:
        try:
            v = conn.recv()
        except EOFError:
            return
        conn.send(v + 1)


def pipe_trip(ctx):
    """One round trip of a small value to a child over a Pipe (the child
    is started on the first call)."""
    if "pipe" not in _shared:
        a, b = ctx.Pipe()
        p = ctx.Process(target=_pipe_echo, args=(b,))
        p.start()
        b.close()
        _shared["pipe"] = (a, p)
    a, _ = _shared["pipe"]
    a.send(1)
    return a.recv()


# Pool benchmarks: an op is one call on a warm pool.


def do_map(pool, n, chunksize=None):
    return pool.map(square, range(n), chunksize)


def do_apply(pool, x):
    return pool.apply(square, (x,))


def sum_below(n):
    """The sum of 0 to n-1, what the consumers of queue_once get."""
    return n * (n - 1) // 2


def do_apply_async(pool, n):
    results = [pool.apply_async(square, (i,)) for i in range(n)]
    return sum(r.get() for r in results)


def do_imap_unordered(pool, n, chunksize):
    count = total = 0
    for v in pool.imap_unordered(square, range(n), chunksize):
        count += 1
        total += v
    return count, total


def warm_pool(ctx):
    pool = ctx.Pool(WORKERS)
    pool.apply(square, (3,))
    pool.map(square, range(1000))
    return pool


# name: (needs a pool, default start methods, op given (ctx or pool))
BENCHMARKS = {
    "Spawn": (False, ("fork", "spawn"), lambda ctx: spawn_once(ctx, 1)),
    "PoolStart": (False, ("fork", "spawn"), lambda ctx: pool_start_once(ctx, 1)),
    "Map": (True, ("fork",), lambda pool: do_map(pool, MAP_ITEMS)),
    "MapChunk1": (True, ("fork",), lambda pool: do_map(pool, MAP_CHUNK1_ITEMS, 1)),
    "Apply": (True, ("fork",), lambda pool: do_apply(pool, 3)),
    "ApplyAsync": (True, ("fork",), lambda pool: do_apply_async(pool, APPLY_ASYNC_CALLS)),
    "ImapUnordered": (True, ("fork",), lambda pool: do_imap_unordered(pool, IMAP_ITEMS, IMAP_CHUNK)),
    "SharedMemory": (True, ("fork",), do_shared_memory),
    "BigArg": (True, ("fork",), do_big_arg),
    "Lock": ("shared", ("fork",), lambda pool: pool.map(lock_loop, [LOCK_OPS] * WORKERS, chunksize=1)),
    "Semaphore": ("shared", ("fork",), lambda pool: pool.map(sem_loop, [LOCK_OPS] * WORKERS, chunksize=1)),
    "RLock": ("shared", ("fork",), lambda pool: pool.map(rlock_loop, [LOCK_OPS] * WORKERS, chunksize=1)),
    "Queue": (False, ("fork",), lambda ctx: queue_once(ctx, 1, 1)),
    "QueueMany": (False, ("fork",), lambda ctx: queue_once(ctx, 2, 2)),
    "Pipe": (False, ("fork",), pipe_trip),
    "Value": ("shared", ("fork",), lambda pool: pool.map(value_loop, [LOCK_OPS] * WORKERS, chunksize=1)),
}


def measure(op, reps, min_time):
    """Runs op at least reps times and for at least min_time seconds, and
    returns the mean seconds per op."""
    n = 0
    start = time.perf_counter()
    while True:
        op()
        n += 1
        elapsed = time.perf_counter() - start
        if n >= reps and elapsed >= min_time:
            return elapsed / n


def run(name, method, reps, min_time):
    needs_pool, _, op = BENCHMARKS[name]
    ctx = multiprocessing.get_context(method)
    label = name if method == "fork" else f"{name}/{method}"
    if not needs_pool:
        sec = measure(lambda: op(ctx), reps, min_time)
    else:
        pool = shared_pool(ctx) if needs_pool == "shared" else warm_pool(ctx)
        try:
            sec = measure(lambda: op(pool), reps, min_time)
        finally:
            pool.terminate()
            pool.join()
    print(f"{label} {sec:.9g}", flush=True)
    if "shm" in _shared:
        _shared.pop("shm").unlink()
    if "pipe" in _shared:
        a, p = _shared.pop("pipe")
        a.close()
        p.terminate()  # a forked child holds a copy of a: it sees no EOF
        p.join()


def check(method):
    """Runs every benchmarked path once, small, and checks its results."""
    ctx = multiprocessing.get_context(method)
    got = {"Spawn": spawn_once(ctx, 41), "PoolStart": pool_start_once(ctx, 41)}
    want = {"Spawn": 42, "PoolStart": 42}
    got["Queue"], want["Queue"] = queue_once(ctx, 1, 1), sum_below(QUEUE_MSGS)
    got["QueueMany"], want["QueueMany"] = queue_once(ctx, 2, 2), 2 * sum_below(QUEUE_MSGS // 2)
    got["Pipe"], want["Pipe"] = pipe_trip(ctx), 2
    pool = warm_pool(ctx)
    try:
        got["Map"] = do_map(pool, 10_000)
        want["Map"] = [i * i for i in range(10_000)]
        got["MapChunk1"] = do_map(pool, 200, 1)
        want["MapChunk1"] = [i * i for i in range(200)]
        got["Apply"], want["Apply"] = do_apply(pool, 7), 49
        got["ApplyAsync"], want["ApplyAsync"] = do_apply_async(pool, 500), sum_squares(500)
        got["ImapUnordered"] = do_imap_unordered(pool, 5000, 100)
        want["ImapUnordered"] = (5000, sum_squares(5000))
    finally:
        pool.terminate()
        pool.join()
    bad = [name for name in want if got[name] != want[name]]
    for name in bad:
        print(f"{name}/{method}: got {got[name]!r:.80}, want {want[name]!r:.80}", file=sys.stderr)
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME",
                    help="benchmarks to run: " + ", ".join(BENCHMARKS) + ", or all")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--reps", type=int, default=0, help="run each op this many times")
    g.add_argument("--time", type=float, default=0, help="run each op for this many seconds")
    ap.add_argument("--method", action="append", choices=multiprocessing.get_all_start_methods(),
                    help="start method (repeatable); the default depends on the benchmark")
    ap.add_argument("--check", action="store_true", help="check every benchmark's results, small")
    args = ap.parse_args()

    if args.check:
        ok = all([check(m) for m in args.method or ("fork", "spawn")])
        print("ok" if ok else "FAIL")
        return 0 if ok else 1
    names = list(BENCHMARKS) if args.names in ([], ["all"]) else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark {', '.join(unknown)}; have {', '.join(BENCHMARKS)}")
    reps = args.reps if args.reps > 0 else 1
    min_time = args.time if args.reps <= 0 else 0
    if args.reps <= 0 and args.time <= 0:
        min_time = 1.0
    for name in names:
        for method in args.method or BENCHMARKS[name][1]:
            run(name, method, reps, min_time)
    return 0


if __name__ == "__main__":
    sys.exit(main())
