"""Serve an exported classifier over HTTP, in TF Serving's REST shape, with dynamic micro-batching.

    python -m deploy.serve --export_dir exported/compact [--engine onnx_int8|onnx|saved_model]
        [--model_name NAME] [--host 127.0.0.1 --port 8501] [--max_batch_size 32]
        [--batch_timeout_ms 0] [--max_request_instances 64] [--max_body_bytes 1000000]
        [--threads 2]

Endpoints (NAME: --model_name, the export folder's name by default):

* ``POST /v1/models/NAME:predict`` ``{"instances": [{"text_a": "...", "text_b": "..."}]}``
  (text_b optional) -> ``{"predictions": [{"label": ..., "probabilities": [...]}]}``, or
  ``{"score": x}`` per instance for a regression model (one output).
* ``GET /v1/models/NAME``: TF Serving's version status; ``GET /v1/models/NAME/metadata``:
  labels, max_seq_length, task, the dev metric of export.json, the engine and batch counts;
  ``GET /v1/models/NAME/stats``: the batch counts alone; ``GET /healthz``: 200 once serving.

Why aiohttp: one well-kept asyncio library gives both the server and the load client
(``deploy.loadtest``), with no extra WSGI server. Why micro-batching: a model call on a batch
of 16 costs far less than 16 calls of one, so instances of concurrent requests share a call.
Every instance joins one queue; the batcher takes up to --max_batch_size of them, waiting at
most --batch_timeout_ms after the first, and runs tokenization (our ``bert.tokenization``:
the checkpoint's own ids) and the engine in one worker thread, so the event loop never blocks.
The default wait is 0: a batch is what arrived while the engine ran the one before, so a lone
request never waits and a busy server still batches (measured on the demo's distilled INT8
export, docs/benchmarks/serving.md: a 5 ms wait cost concurrency 1 6.5 ms of its 8.1 ms p50
and lowered throughput at every concurrency).

A bad request gets HTTP 400 (413 for a body over --max_body_bytes, 404 for another model's
name) with ``{"error": "..."}`` naming the field. SIGTERM or SIGINT stops accepting
connections, lets the requests in flight finish and exits 0. Flags and the export folder are
checked before the port is bound: a bad one is one line and exit 1.
"""
import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import os
import signal
import sys
import time

import numpy as np
from aiohttp import web

from bert import cli, tasks, tokenization
from bert.errors import InputError
from bert.features import HEAD
from deploy import export, inference

log = logging.getLogger("deploy")

PROGRAM = "deploy.serve"
ONNX, ONNX_INT8, SAVED_MODEL = "onnx", "onnx_int8", "saved_model"
ENGINE_FILES = {ONNX: export.ONNX_FILE, ONNX_INT8: export.INT8_FILE,
                SAVED_MODEL: export.SAVED_MODEL_DIR}
LOCAL_HOST = "127.0.0.1"  # not reachable from other machines unless asked for
DEFAULT_PORT = 8501  # TF Serving's REST port
MAX_PORT = 65535
MS_PER_S = 1000.0
MODEL_VERSION = "1"  # one export folder is one version
# Graceful stop: how long requests in flight may take to finish after SIGTERM.
SHUTDOWN_TIMEOUT_S = 30.0
# One engine call at a time: the engine's own --threads parallelize inside a batch.
ENGINE_WORKERS = 1
TEXT_FIELDS = ("text_a", "text_b")
REQUIRED_FIELD = "text_a"
REGRESSION_LABELS = 1


@dataclasses.dataclass
class ServerSettings:
    """What the server needs, with the defaults of its flags."""
    export_dir: str
    engine: str = ONNX_INT8
    model_name: str = ""  # empty: the export folder's name
    host: str = LOCAL_HOST
    port: int = DEFAULT_PORT
    max_batch_size: int = 32
    batch_timeout_ms: float = 0.0  # 0: whatever queued while the engine was busy
    max_request_instances: int = 64
    max_body_bytes: int = 1_000_000
    threads: int = 2


@dataclasses.dataclass
class ExportInfo:
    """export.json's facts the server answers with."""
    labels: list
    num_labels: int
    max_seq_length: int
    do_lower_case: bool
    truncation: str
    task: str  # display name, or None without a task
    dev: dict  # export.json's "dev" (metric and each format's value), or None

    @property
    def is_regression(self):
        return self.num_labels == REGRESSION_LABELS


def model_name_of(settings):
    return settings.model_name or os.path.basename(os.path.normpath(settings.export_dir))


def validate(settings):
    """Every check on the settings and the export folder, before anything is loaded."""
    cli.require(settings.engine in ENGINE_FILES,
                f"--engine={settings.engine}: expected one of {', '.join(ENGINE_FILES)}")
    cli.require_dir(settings.export_dir, "export_dir", "a deploy.export folder")
    cli.require_file(os.path.join(settings.export_dir, export.EXPORT_FILE), "export_dir",
                     f"{export.EXPORT_FILE} of deploy.export")
    cli.require_file(os.path.join(settings.export_dir, export.VOCAB_FILE), "export_dir",
                     f"the {export.VOCAB_FILE} of deploy.export")
    engine_path = os.path.join(settings.export_dir, ENGINE_FILES[settings.engine])
    cli.require(os.path.exists(engine_path), f"--export_dir={settings.export_dir}: "
                f"{ENGINE_FILES[settings.engine]} not found (--engine {settings.engine})")
    name = model_name_of(settings)
    cli.require(name and "/" not in name and ":" not in name,
                f"--model_name={name}: must be non-empty, without '/' or ':'")
    cli.require(bool(settings.host), "--host must not be empty")
    cli.require_in_range(settings.port, "port", 0, MAX_PORT)
    cli.require_in_range(settings.max_batch_size, "max_batch_size", 1)
    cli.require_in_range(settings.batch_timeout_ms, "batch_timeout_ms", 0)
    cli.require_in_range(settings.max_request_instances, "max_request_instances", 1)
    cli.require_in_range(settings.max_body_bytes, "max_body_bytes", 1)
    cli.require_in_range(settings.threads, "threads", 1)
    return read_export_info(settings.export_dir)


def read_export_info(folder):
    path = os.path.join(folder, export.EXPORT_FILE)
    try:
        with open(path, encoding="utf-8") as handle:
            summary = json.load(handle)
        num_labels = int(summary["num_labels"])
        labels = list(summary["labels"])
        info = ExportInfo(labels, num_labels, int(summary["max_seq_length"]),
                          bool(summary["do_lower_case"]), summary.get("truncation") or HEAD,
                          None, summary.get("dev"))
        task_name = summary.get("task_name")
    except (ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path}: not an export.json of deploy.export ({error!r})") from None
    cli.require(info.is_regression or len(labels) == num_labels,
                f"{path}: {len(labels)} labels for a {num_labels}-output head")
    if task_name:
        info.task = tasks.display_name(task_name)
    return info


class TokenEngine:
    """An ONNX file on our tokenizer's ids: logits of [(text_a, text_b or None)]."""

    def __init__(self, path, info, threads):
        self.tokenizer = tokenization.create_tokenizer(
            os.path.join(os.path.dirname(path), export.VOCAB_FILE), info.do_lower_case)
        self.runner = inference.OnnxRunner(path, threads)
        self.info = info

    def __call__(self, pairs):
        return self.runner(*inference.encode(self.tokenizer, pairs, self.info.max_seq_length,
                                             self.info.truncation))

    def close(self):
        self.runner.close()


class TextEngine:
    """The SavedModel's serving signature, raw text in (it tokenizes in its graph)."""

    def __init__(self, path):
        self.runner = export.SavedModelRunner(path)

    def __call__(self, pairs):
        return self.runner([text_a for text_a, _ in pairs], [text_b or "" for _, text_b in pairs])

    def close(self):
        self.runner.close()


def load_engine(settings, info):
    path = os.path.join(settings.export_dir, ENGINE_FILES[settings.engine])
    if settings.engine == SAVED_MODEL:
        return TextEngine(path)
    return TokenEngine(path, info, settings.threads)


def predictions(logits, info):
    """Each row's answer: its label and softmax probabilities, or its score (regression)."""
    logits = np.asarray(logits, np.float64)
    if info.is_regression:
        return [{"score": float(row[0])} for row in logits]
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities = shifted / shifted.sum(-1, keepdims=True)
    return [{"label": str(info.labels[int(np.argmax(row))]), "probabilities": row.tolist()}
            for row in probabilities]


class Batcher:
    """Instances of concurrent requests, grouped into engine calls (see the module docstring)."""

    def __init__(self, engine, info, max_batch_size, timeout_s):
        self.engine, self.info = engine, info
        self.max_batch_size, self.timeout_s = max_batch_size, timeout_s
        self.queue = asyncio.Queue()
        self.executor = concurrent.futures.ThreadPoolExecutor(ENGINE_WORKERS)
        self.batch_sizes = {}  # size -> batches of that size
        self.task = None

    def start(self):
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def predict(self, pairs):
        """The answers to ``pairs``, in order, once the batches holding them have run."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in pairs]
        for pair, future in zip(pairs, futures):
            self.queue.put_nowait((pair, future))
        return await asyncio.gather(*futures)

    async def _next_batch(self):
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.timeout_s
        while len(batch) < self.max_batch_size:
            if not self.queue.empty():
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return batch

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            pairs = [pair for pair, _ in batch]
            try:
                logits = await loop.run_in_executor(self.executor, self.engine, pairs)
                answers = predictions(logits, self.info)
            except Exception as error:  # the engine's failure is each request's, not ours
                log.exception("engine call on %d instances failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
            for (_, future), answer in zip(batch, answers):
                if not future.done():  # a request cancelled by its client drops its rows
                    future.set_result(answer)

    def stats(self):
        batches = sum(self.batch_sizes.values())
        instances = sum(size * count for size, count in self.batch_sizes.items())
        return {"batches": batches, "instances": instances,
                "max_batch_size": max(self.batch_sizes, default=0),
                "batch_sizes": {str(size): count
                                for size, count in sorted(self.batch_sizes.items())}}

    async def close(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.executor.shutdown(wait=True)


class BadRequest(Exception):
    """A request the server refuses: HTTP ``status`` with ``{"error": message}``."""

    def __init__(self, message, status=web.HTTPBadRequest.status_code):
        super().__init__(message)
        self.status = status


def parse_instances(body, max_instances):
    """[(text_a, text_b or None)] of a predict body, or BadRequest naming the field."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadRequest(f"body: not JSON ({error})") from None
    if not isinstance(request, dict) or "instances" not in request:
        raise BadRequest('"instances": missing (expected {"instances": [{"text_a": ...}]})')
    instances = request["instances"]
    if not isinstance(instances, list) or not instances:
        raise BadRequest('"instances": expected a non-empty list of objects')
    if len(instances) > max_instances:
        raise BadRequest(f'"instances": {len(instances)} instances, more than the limit '
                         f"--max_request_instances={max_instances}")
    pairs = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise BadRequest(f'"instances"[{index}]: expected an object with "text_a"')
        if REQUIRED_FIELD not in instance:
            raise BadRequest(f'"instances"[{index}]."{REQUIRED_FIELD}": missing')
        for field in TEXT_FIELDS:
            value = instance.get(field)
            if value is not None and not isinstance(value, str):
                raise BadRequest(f'"instances"[{index}]."{field}": expected a string, got '
                                 f"{type(value).__name__}")
        if instance[REQUIRED_FIELD] is None:
            raise BadRequest(f'"instances"[{index}]."{REQUIRED_FIELD}": expected a string')
        pairs.append((instance[REQUIRED_FIELD], instance.get("text_b")))
    return pairs


def error_response(message, status):
    return web.json_response({"error": message}, status=status)


class Handlers:
    """The HTTP endpoints of one model."""

    def __init__(self, settings, info, batcher):
        self.settings, self.info, self.batcher = settings, info, batcher
        self.name = model_name_of(settings)

    def check_name(self, request):
        name = request.match_info["name"]
        if name != self.name:
            raise BadRequest(f"model name: {name!r} is not served (this server serves "
                             f"{self.name!r})", web.HTTPNotFound.status_code)

    async def predict(self, request):
        try:
            self.check_name(request)
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise BadRequest(f"body: over the limit --max_body_bytes="
                                 f"{self.settings.max_body_bytes}",
                                 web.HTTPRequestEntityTooLarge.status_code) from None
            pairs = parse_instances(body, self.settings.max_request_instances)
        except BadRequest as error:
            return error_response(str(error), error.status)
        try:
            answers = await self.batcher.predict(pairs)
        except Exception as error:  # the engine failed on this batch (logged by the batcher)
            return error_response(f"engine: {type(error).__name__}: {error}",
                                  web.HTTPInternalServerError.status_code)
        return web.json_response({"predictions": answers})

    async def status(self, request):
        try:
            self.check_name(request)
        except BadRequest as error:
            return error_response(str(error), error.status)
        return web.json_response({"model_version_status": [{
            "version": MODEL_VERSION, "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}]})

    async def metadata(self, request):
        try:
            self.check_name(request)
        except BadRequest as error:
            return error_response(str(error), error.status)
        dev = self.info.dev or {}
        return web.json_response({
            "model_spec": {"name": self.name, "version": MODEL_VERSION},
            "labels": self.info.labels, "num_labels": self.info.num_labels,
            "max_seq_length": self.info.max_seq_length, "task": self.info.task,
            "metric": dev.get("metric"), "dev_metric": dev.get(self.settings.engine),
            "engine": self.settings.engine, "stats": self.batcher.stats()})

    async def stats(self, request):
        try:
            self.check_name(request)
        except BadRequest as error:
            return error_response(str(error), error.status)
        return web.json_response(self.batcher.stats())

    async def health(self, request):
        return web.json_response({"status": "ok"})


def build_app(settings, info, batcher):
    handlers = Handlers(settings, info, batcher)
    # aiohttp refuses a body of client_max_size bytes or more: the limit itself is allowed.
    app = web.Application(client_max_size=settings.max_body_bytes + 1)
    name = "{name:[^/:]+}"
    app.router.add_post(f"/v1/models/{name}:predict", handlers.predict)
    app.router.add_get(f"/v1/models/{name}", handlers.status)
    app.router.add_get(f"/v1/models/{name}/metadata", handlers.metadata)
    app.router.add_get(f"/v1/models/{name}/stats", handlers.stats)
    app.router.add_get("/healthz", handlers.health)
    return app


async def serve(settings, info, engine):
    """Serve until SIGTERM or SIGINT, then finish the requests in flight."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    batcher = Batcher(engine, info, settings.max_batch_size,
                      settings.batch_timeout_ms / MS_PER_S)
    batcher.start()
    runner = web.AppRunner(build_app(settings, info, batcher), handle_signals=False,
                           shutdown_timeout=SHUTDOWN_TIMEOUT_S, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        port = runner.addresses[0][1]  # the real one when --port 0
        print(f"serving {model_name_of(settings)} ({settings.engine}) on "
              f"http://{settings.host}:{port}/v1/models/{model_name_of(settings)}", flush=True)
        await stop.wait()
        log.info("stopping: finishing the requests in flight")
    finally:
        await runner.cleanup()
        await batcher.close()


def run(settings):
    info = validate(settings)
    engine = load_engine(settings, info)
    try:
        asyncio.run(serve(settings, info, engine))
    finally:
        engine.close()


def _default(name):
    return cli.field_default(ServerSettings, name)


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--export_dir", required=True, help="a deploy.export output folder")
    parser.add_argument("--engine", choices=list(ENGINE_FILES), default=_default("engine"),
                        help="which exported file answers")
    parser.add_argument("--model_name", default=_default("model_name"),
                        help="NAME in /v1/models/NAME (default: the export folder's name)")
    parser.add_argument("--host", default=_default("host"), help="address to bind")
    parser.add_argument("--port", type=int, default=_default("port"),
                        help="port to bind (0: any free one, printed at start)")
    parser.add_argument("--max_batch_size", type=int, default=_default("max_batch_size"),
                        help="most instances in one engine call")
    parser.add_argument("--batch_timeout_ms", type=float, default=_default("batch_timeout_ms"),
                        help="longest wait for more instances after a batch's first (0: "
                             "only those that queued while the engine was busy)")
    parser.add_argument("--max_request_instances", type=int,
                        default=_default("max_request_instances"),
                        help="most instances in one request (more: 400)")
    parser.add_argument("--max_body_bytes", type=int, default=_default("max_body_bytes"),
                        help="largest request body (more: 413)")
    parser.add_argument("--threads", type=int, default=_default("threads"),
                        help="the ONNX engine's intra-op threads")
    args = parser.parse_args(argv)
    cli.configure_logging()
    settings = cli.settings_from_namespace(ServerSettings, args)
    return cli.run_main(lambda: run(settings), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
