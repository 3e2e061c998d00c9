"""deploy.serve and deploy.loadtest: a tiny export served over HTTP on 127.0.0.1.

The server runs as its own process (as deployed), on a free port it picks itself (--port 0,
printed at start). Its answers are compared with the checkpoint's logits computed without
deploy (test_deploy_export.reference_logits), alone and under concurrent load.
"""
import asyncio
import json
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp
import numpy as np
import pytest

from conftest import REPO_ROOT
from deploy import export, serve
from test_deploy_export import MAX_SEQ_LENGTH, reference_logits, sentences, write_model

MODEL_NAME = "tiny"
START_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 20.0
EXIT_TIMEOUT_S = 30.0
POLL_S = 0.1
PROBABILITY_TOLERANCE = 1e-4
# Batched rows are padded longer than a single request's: float noise only.
BATCHED_TOLERANCE = 1e-5
MAX_REQUEST_INSTANCES = 8
MAX_BODY_BYTES = 4096
BATCH_TIMEOUT_MS = 20  # long enough that concurrent requests share batches on a slow CI box
CONCURRENT_REQUESTS = 200
CLIENTS = 16
DISTINCT_TEXTS = 20
# The SIGTERM test: requests wait this long in the batcher, so SIGTERM finds them in flight.
SLOW_BATCH_TIMEOUT_MS = 1500
IN_FLIGHT_REQUESTS = 8
SIGTERM_AFTER_S = 0.5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model folder, export folder) of a tiny dense classifier."""
    root = tmp_path_factory.mktemp("serve")
    model_dir = write_model(root / "model", "dense")
    output_dir = root / MODEL_NAME
    assert export.main(["--model_dir", str(model_dir), "--output_dir", str(output_dir),
                        "--max_seq_length", str(MAX_SEQ_LENGTH)]) == 0
    return model_dir, output_dir


class Server:
    """A deploy.serve process; ``url`` once it has printed its address and /healthz is 200."""

    def __init__(self, export_dir, log_path, *flags):
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deploy.serve", "--export_dir", str(export_dir),
             "--model_name", MODEL_NAME, "--port", "0", *flags],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.terminated = False  # a second SIGTERM would end the graceful stop early
        self.base = self._address()
        self.url = f"{self.base}/v1/models/{MODEL_NAME}"
        self._wait_healthy()

    def _address(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], POLL_S)
            if ready:
                line = self.process.stdout.readline()
                assert line, f"the server exited: {self.process.wait()}"
                if line.startswith("serving "):
                    address = line.split(" on ")[1].strip()
                    return address.split("/v1/")[0]
        raise AssertionError("the server did not start in time")

    def _wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if get(f"{self.base}/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(POLL_S)
        raise AssertionError("/healthz never answered")

    def terminate(self):
        self.process.send_signal(signal.SIGTERM)
        self.terminated = True

    def stop(self):
        if not self.terminated and self.process.poll() is None:
            self.terminate()
        returncode = self.process.wait(EXIT_TIMEOUT_S)
        self.log.close()
        return returncode


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    _, export_dir = exported
    running = Server(export_dir, tmp_path_factory.mktemp("log") / "server.log",
                     "--engine", "onnx", "--batch_timeout_ms", str(BATCH_TIMEOUT_MS),
                     "--max_request_instances", str(MAX_REQUEST_INSTANCES),
                     "--max_body_bytes", str(MAX_BODY_BYTES))
    yield running
    assert running.stop() == 0


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def post(url, body):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def instances(pairs):
    return [{"text_a": text_a} if text_b is None else {"text_a": text_a, "text_b": text_b}
            for text_a, text_b in pairs]


def predict(url, pairs):
    status, answer = post(f"{url}:predict", json.dumps({"instances": instances(pairs)}).encode())
    assert status == 200, answer
    return answer["predictions"]


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def assert_checkpoint_probabilities(url, model_dir, pairs):
    answers = [answer for start in range(0, len(pairs), MAX_REQUEST_INSTANCES)
               for answer in predict(url, pairs[start:start + MAX_REQUEST_INSTANCES])]
    expected = softmax(reference_logits(model_dir, pairs))
    got = np.array([answer["probabilities"] for answer in answers])
    assert np.max(np.abs(got - expected)) < PROBABILITY_TOLERANCE
    assert [answer["label"] for answer in answers] == [str(label) for label
                                                       in np.argmax(expected, -1)]


def test_predictions_are_the_checkpoint_probabilities(server, exported):
    model_dir, _ = exported
    assert_checkpoint_probabilities(server.url, model_dir, sentences())


def test_status_and_metadata(server):
    status, answer = get(server.url)
    assert status == 200
    assert answer["model_version_status"][0]["state"] == "AVAILABLE"
    status, metadata = get(f"{server.url}/metadata")
    assert status == 200
    assert metadata["labels"] == [0, 1] and metadata["max_seq_length"] == MAX_SEQ_LENGTH
    assert metadata["engine"] == "onnx" and "stats" in metadata


async def concurrent_answers(url, bodies):
    queue = list(enumerate(bodies))
    answers = [None] * len(bodies)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    async def client(session):
        while queue:
            index, body = queue.pop()
            async with session.post(f"{url}:predict", json=body) as response:
                answers[index] = (response.status, await response.json())

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
    return answers


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server):
    pairs = sentences()[:DISTINCT_TEXTS]
    single = [predict(server.url, [pair])[0] for pair in pairs]
    chosen = [index % len(pairs) for index in range(CONCURRENT_REQUESTS)]
    bodies = [{"instances": instances([pairs[index]])} for index in chosen]
    answers = asyncio.run(concurrent_answers(server.url, bodies))
    for index, (status, answer) in zip(chosen, answers):
        assert status == 200, answer
        (prediction,) = answer["predictions"]
        assert prediction["label"] == single[index]["label"]
        np.testing.assert_allclose(prediction["probabilities"], single[index]["probabilities"],
                                   atol=BATCHED_TOLERANCE)
    status, stats = get(f"{server.url}/stats")
    assert status == 200 and stats["max_batch_size"] > 1, stats


BAD_REQUESTS = {
    "not_json": (b"{not json", 400, "body"),
    "no_instances": (b'{"inputs": []}', 400, '"instances"'),
    "instances_not_a_list": (b'{"instances": {"text_a": "x"}}', 400, '"instances"'),
    "missing_text_a": (b'{"instances": [{"text_b": "x"}]}', 400, '"text_a"'),
    "text_a_not_a_string": (b'{"instances": [{"text_a": 5}]}', 400, '"text_a"'),
    "text_b_not_a_string": (b'{"instances": [{"text_a": "x", "text_b": ["y"]}]}', 400,
                            '"text_b"'),
    "too_many_instances": (json.dumps({"instances": [{"text_a": "x"}] * (
        MAX_REQUEST_INSTANCES + 1)}).encode(), 400, "--max_request_instances"),
    "body_too_large": (json.dumps({"instances": [{"text_a": "x" * MAX_BODY_BYTES}]}).encode(),
                       413, "--max_body_bytes"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_names_the_field_and_the_server_goes_on(server, case):
    body, expected_status, named = BAD_REQUESTS[case]
    status, answer = post(f"{server.url}:predict", body)
    assert status == expected_status and named in answer["error"], answer
    assert len(predict(server.url, sentences()[:1])) == 1


def test_unknown_model_is_404(server):
    status, answer = post(f"{server.base}/v1/models/other:predict",
                          json.dumps({"instances": [{"text_a": "x"}]}).encode())
    assert status == 404 and "model name" in answer["error"]
    assert get(f"{server.base}/v1/models/other")[0] == 404


async def answers_around_sigterm(running, pairs):
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def one(pair):
            async with session.post(f"{running.url}:predict",
                                    json={"instances": instances([pair])}) as response:
                return response.status, await response.json()
        requests = [asyncio.ensure_future(one(pair)) for pair in pairs]
        await asyncio.sleep(SIGTERM_AFTER_S)
        assert not any(request.done() for request in requests)  # still in the batcher
        running.terminate()
        return await asyncio.gather(*requests)


def test_saved_model_engine_and_sigterm_finishes_requests_in_flight(exported, tmp_path):
    model_dir, export_dir = exported
    running = Server(export_dir, tmp_path / "server.log", "--engine", "saved_model",
                     "--batch_timeout_ms", str(SLOW_BATCH_TIMEOUT_MS),
                     "--max_batch_size", str(IN_FLIGHT_REQUESTS * 2))
    try:
        pairs = sentences()[:IN_FLIGHT_REQUESTS]
        answers = asyncio.run(answers_around_sigterm(running, pairs))
        assert [status for status, _ in answers] == [200] * len(pairs), answers
        got = np.array([answer["predictions"][0]["probabilities"] for _, answer in answers])
        expected = softmax(reference_logits(model_dir, pairs))
        assert np.max(np.abs(got - expected)) < PROBABILITY_TOLERANCE
    finally:
        assert running.stop() == 0


def run_module(module, *flags):
    return subprocess.run([sys.executable, "-m", module, *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=START_TIMEOUT_S)


def test_loadtest_reports_throughput_latency_and_no_errors(server):
    process = run_module("deploy.loadtest", "--url", f"{server.url}:predict",
                         "--concurrency", "4", "--requests", "40",
                         "--instances_per_request", "2", "--json")
    assert process.returncode == 0, process.stderr[-2000:]
    assert "requests/s" in process.stdout and "p99" in process.stdout
    figures = json.loads(process.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0 and figures["requests_per_s"] > 0
    assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"]


def test_loadtest_refuses_a_remote_host_and_serve_a_missing_export(tmp_path):
    process = run_module("deploy.loadtest", "--url", "http://example.com:8501/v1/models/m"
                                                     ":predict", "--concurrency", "2")
    assert process.returncode == 1 and "not local" in process.stderr
    process = run_module("deploy.serve", "--export_dir", str(tmp_path / "missing"))
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1].startswith(f"{serve.PROGRAM}: error: "
                                                              "--export_dir")


def test_regression_answers_a_score_and_classification_its_label():
    logits = np.array([[0.5, 2.0], [3.0, -1.0]])
    info = serve.ExportInfo(labels=["neg", "pos"], num_labels=2, max_seq_length=MAX_SEQ_LENGTH,
                            do_lower_case=True, truncation="head", task=None, dev=None)
    answers = serve.predictions(logits, info)
    assert [answer["label"] for answer in answers] == ["pos", "neg"]
    np.testing.assert_allclose([answer["probabilities"] for answer in answers], softmax(logits))
    info.num_labels, info.labels = 1, None
    assert serve.predictions(np.array([[1.5], [-0.25]]), info) == [{"score": 1.5},
                                                                   {"score": -0.25}]
