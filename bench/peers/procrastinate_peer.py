"""procrastinate on the shared PostgreSQL: burn-down of preloaded no-op
jobs with a fixed concurrency, then a fixed arrival rate with latency.
Recommended settings: LISTEN/NOTIFY wake-ups (the default), one worker
process with `concurrency` sub-workers."""

import asyncio
import json
import os
import sys
import time
from importlib.metadata import version

import procrastinate

URL = os.environ["DATABASE_URL"]
JOBS = int(os.environ.get("PEER_JOBS", "10000"))
CONCURRENCY = int(os.environ.get("PEER_CONCURRENCY", "32"))
RATE = int(os.environ.get("PEER_RATE", "200"))
SECONDS = int(os.environ.get("PEER_SECONDS", "10"))

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=URL, min_size=2, max_size=CONCURRENCY + 2)
)
done = 0
latencies = []


@app.task(name="noop")
async def noop(n=None, intended=None):
    global done
    done += 1
    if intended is not None:
        latencies.append(time.time() * 1000 - intended)


def percentiles(samples):
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    at = lambda q: ordered[round((len(ordered) - 1) * q)]
    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ordered[-1]}


async def wait_until(condition, limit):
    started = time.monotonic()
    while not condition() and time.monotonic() - started < limit:
        await asyncio.sleep(0.005)


async def burn_down():
    for start in range(0, JOBS, 1000):
        await noop.batch_defer_async(*({"n": n} for n in range(start, min(start + 1000, JOBS))))
    started = time.monotonic()
    worker = asyncio.create_task(app.run_worker_async(concurrency=CONCURRENCY, wait=True))
    await wait_until(lambda: done >= JOBS, 600)
    seconds = time.monotonic() - started
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    return done, seconds


async def fixed_rate():
    worker = asyncio.create_task(app.run_worker_async(concurrency=CONCURRENCY, wait=True))
    await asyncio.sleep(0.5)
    total = RATE * SECONDS
    start = time.time() * 1000 + 100
    pending = []
    for n in range(total):
        intended = start + n * 1000 / RATE
        wait = (intended - time.time() * 1000) / 1000
        if wait > 0:
            await asyncio.sleep(wait)
        pending.append(asyncio.create_task(noop.defer_async(intended=intended)))
    await asyncio.gather(*pending)
    await wait_until(lambda: len(latencies) >= total, 60)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    return {"completed": len(latencies), **percentiles(latencies)}


async def main():
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        jobs, seconds = await burn_down()
        rate = await fixed_rate()
    line = {
        "system": f"procrastinate {version('procrastinate')}",
        "burn_down_jobs": jobs,
        "burn_down_per_s": jobs / seconds,
        "rate": RATE,
        **rate,
    }
    sys.stdout.write(json.dumps(line) + "\n")


asyncio.run(main())
