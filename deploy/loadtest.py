"""Load a local prediction server (``deploy.serve``) and report its throughput and latency.

    python -m deploy.loadtest --url http://127.0.0.1:8501/v1/models/NAME:predict \\
        --concurrency 16 --requests 1000 [--instances_per_request 1] [--texts_file F] [--json]

--concurrency clients send --requests predict requests in all, each of
--instances_per_request instances, taken in turn from built-in sentences or --texts_file (one
instance a line; a tab separates text_a from text_b). Prints requests/s, instances/s, the
p50/p90/p99 latency in ms and the count of failed requests (not HTTP 200, or no answer);
``--json`` adds the same figures as one JSON line.

Only a server on this machine is loaded (127.0.0.1, localhost, ::1): a load tool pointed at
someone else's host is a denial of service. Uses aiohttp's client, as the server uses aiohttp.
"""
import asyncio
import dataclasses
import json
import sys
import time
import urllib.parse

import aiohttp
import numpy as np

from bert import cli
from bert.errors import InputError

PROGRAM = "deploy.loadtest"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
MAX_CONCURRENCY = 256
MAX_REQUESTS = 1_000_000
MAX_INSTANCES_PER_REQUEST = 1024
PERCENTILES = (50, 90, 99)
MS_PER_S = 1000.0
REQUEST_TIMEOUT_S = 60.0  # one request's longest wait before it counts as an error
HTTP_OK = 200
TEXT_SEPARATOR = "\t"
BUILT_IN_TEXTS = [
    ("The cat sat on the mat.", "A dog sat on it."),
    ("It was a good movie.", None),
    ("Not very fun, and the plot is dull!", None),
    ("A warm, funny and quietly moving film.", None),
    ("The service was slow but the food made up for it.", None),
    ("Is this the same question?", "Is that the same question?"),
    ("An uneven script that never finds its tone.", None),
    ("Two men are playing guitar.", "A man plays a guitar on stage."),
]


@dataclasses.dataclass
class LoadSettings:
    url: str
    concurrency: int = 8
    requests: int = 100
    instances_per_request: int = 1
    texts_file: str = None


def validate(settings):
    parsed = urllib.parse.urlsplit(settings.url)
    cli.require(parsed.scheme in ("http", "https") and parsed.hostname,
                f"--url={settings.url}: expected http://HOST:PORT/v1/models/NAME:predict")
    cli.require(parsed.hostname in LOCAL_HOSTS,
                f"--url={settings.url}: host {parsed.hostname} is not local (only "
                f"{', '.join(LOCAL_HOSTS)}: load only a server of your own)")
    cli.require_in_range(settings.concurrency, "concurrency", 1, MAX_CONCURRENCY)
    cli.require_in_range(settings.requests, "requests", 1, MAX_REQUESTS)
    cli.require_in_range(settings.instances_per_request, "instances_per_request", 1,
                         MAX_INSTANCES_PER_REQUEST)


def read_texts(path):
    """[(text_a, text_b or None)] of a texts file: one instance a line, a tab before text_b."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    if not lines:
        raise InputError(f"--texts_file={path}: no texts in it")
    pairs = []
    for line in lines:
        text_a, _, text_b = line.partition(TEXT_SEPARATOR)
        pairs.append((text_a, text_b or None))
    return pairs


def request_bodies(pairs, settings):
    """Each request's JSON body, instances taken in turn from ``pairs``."""
    bodies = []
    for number in range(settings.requests):
        start = number * settings.instances_per_request
        instances = []
        for offset in range(settings.instances_per_request):
            text_a, text_b = pairs[(start + offset) % len(pairs)]
            instance = {"text_a": text_a}
            if text_b is not None:
                instance["text_b"] = text_b
            instances.append(instance)
        bodies.append(json.dumps({"instances": instances}))
    return bodies


async def load(settings, bodies):
    """(latencies in seconds of the answered requests, failures, wall seconds)."""
    latencies, failures = [], []
    pending = iter(bodies)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=settings.concurrency)

    async def client(session):
        for body in pending:  # one shared iterator: each body is sent once
            started = time.perf_counter()
            try:
                async with session.post(settings.url, data=body, headers={
                        "Content-Type": "application/json"}) as response:
                    await response.read()
                    ok = response.status == HTTP_OK
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            (latencies if ok else failures).append(time.perf_counter() - started)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(settings.concurrency)))
        wall = time.perf_counter() - started
    return latencies, len(failures), wall


def summarize(settings, latencies, errors, wall):
    answered = len(latencies)
    figures = {"requests": settings.requests, "errors": errors, "seconds": wall,
               "requests_per_s": answered / wall,
               "instances_per_s": answered * settings.instances_per_request / wall}
    values = np.percentile(latencies, PERCENTILES) * MS_PER_S if latencies else [None] * len(
        PERCENTILES)
    figures.update({f"p{percentile}_ms": None if value is None else float(value)
                    for percentile, value in zip(PERCENTILES, values)})
    return figures


def format_figures(figures, settings):
    latency = ", ".join(f"p{percentile} " + (
        "-" if figures[f"p{percentile}_ms"] is None else f"{figures[f'p{percentile}_ms']:.1f}")
        for percentile in PERCENTILES)
    return "\n".join([
        f"{figures['requests']} requests x {settings.instances_per_request} instances, "
        f"concurrency {settings.concurrency}, in {figures['seconds']:.2f} s",
        f"throughput: {figures['requests_per_s']:.1f} requests/s, "
        f"{figures['instances_per_s']:.1f} instances/s",
        f"latency ms: {latency}",
        f"errors: {figures['errors']}"])


def run(settings, as_json):
    validate(settings)
    pairs = read_texts(settings.texts_file) if settings.texts_file else BUILT_IN_TEXTS
    latencies, errors, wall = asyncio.run(load(settings, request_bodies(pairs, settings)))
    figures = summarize(settings, latencies, errors, wall)
    print(format_figures(figures, settings), flush=True)
    if as_json:
        print(json.dumps(figures), flush=True)


def _default(name):
    return cli.field_default(LoadSettings, name)


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--url", required=True,
                        help="http://127.0.0.1:PORT/v1/models/NAME:predict (local hosts only)")
    parser.add_argument("--concurrency", type=int, default=_default("concurrency"),
                        help=f"clients sending at once (1..{MAX_CONCURRENCY})")
    parser.add_argument("--requests", type=int, default=_default("requests"),
                        help=f"requests in all (1..{MAX_REQUESTS})")
    parser.add_argument("--instances_per_request", type=int,
                        default=_default("instances_per_request"),
                        help=f"instances in each request (1..{MAX_INSTANCES_PER_REQUEST})")
    parser.add_argument("--texts_file", default=_default("texts_file"),
                        help="one instance a line, a tab before text_b (default: built-in)")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    cli.configure_logging()
    settings = cli.settings_from_namespace(LoadSettings, args)
    return cli.run_main(lambda: run(settings, args.json), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
