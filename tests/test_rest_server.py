"""The server's command line and its guards: flags, HEARTH_* variables, --lib-path, refusing to listen on
the network without a key, and the API key itself (a wrong or missing one gets a 401)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import llama_cpp
import openai
import pytest
import requests
from pydantic import ValidationError
from support.rest import ROOT, free_port, hearth_server

from llm.rest import ServerSettings
from llm.rest.models import parse_spec
from native import SamplingParams, load_engine
from native.remote_wire import RemoteRejected

KEY = "s3cret-key"
LIBRARY = Path(llama_cpp.__file__).parent / "lib"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llm.rest", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_flag():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in [
        "--model",
        "--lib-path",
        "--device",
        "--host",
        "--port",
        "--api-key",
        "--parallel",
        "--ctx-size",
        "--stream-interval-ms",
    ]:
        assert flag in result.stdout
    assert "--insecure" in result.stdout and "NAME=MODEL" in result.stdout


def test_refuses_to_listen_on_the_network_without_a_key():
    result = run_cli("--host", "0.0.0.0", "--port", str(free_port()))
    assert result.returncode != 0
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr
    assert "--insecure" in result.stderr


def test_an_unknown_model_stops_the_server_with_the_reason():
    result = run_cli("--model", "no-such-model", "--port", str(free_port()))
    assert result.returncode != 0
    assert "no-such-model" in result.stderr and "available:" in result.stderr


def test_a_library_folder_without_llama_cpp_is_refused(tmp_path):
    result = run_cli("--lib-path", str(tmp_path), "--port", str(free_port()))
    assert result.returncode != 0 and "no llama.cpp library" in result.stderr


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A server configured by HEARTH_* variables only, with an API key and llama.cpp from a copied folder."""
    library = tmp_path_factory.mktemp("llama-lib").resolve()
    for file in LIBRARY.iterdir():
        shutil.copy2(file, library / file.name, follow_symlinks=False)
    env = {
        "HEARTH_API_KEY": KEY,
        "HEARTH_MODEL": "tiny=default",
        "HEARTH_PARALLEL": "2",
        "HEARTH_CTX_SIZE": "512",
        "HEARTH_THREADS": "1",
        "HEARTH_LIB_PATH": str(library),
    }
    with hearth_server(env=env, port_flag=False) as server:
        server.library = library
        yield server


def test_settings_come_from_hearth_variables(keyed):
    headers = {"Authorization": f"Bearer {KEY}"}
    models = requests.get(keyed.url + "/v1/models", headers=headers, timeout=10).json()["data"]
    assert [(m["id"], m["context_length"]) for m in models] == [("tiny", 512)]
    figures = requests.get(keyed.url + "/stats", headers=headers, timeout=10).json()["models"]["tiny"]
    assert figures["slots_total"] == 2


def test_lib_path_loads_llama_cpp_from_that_folder(keyed):
    mapped = Path(f"/proc/{keyed.process.pid}/maps").read_text()
    assert str(keyed.library / "libllama.so") in mapped
    assert str(LIBRARY / "libllama.so") not in mapped


def test_a_wrong_or_missing_key_gets_401_and_the_right_one_is_served(keyed):
    wrong = openai.OpenAI(base_url=keyed.url + "/v1", api_key="not-it", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
    assert refused.value.code == "invalid_api_key"
    for headers in [{}, {"Authorization": KEY}, {"Authorization": f"Basic {KEY}"}]:
        response = requests.get(keyed.url + "/v1/models", headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert requests.post(keyed.url + "/chat/reset", json={}, timeout=10).status_code == 401
    assert requests.get(keyed.url + "/stats", timeout=10).status_code == 401
    right = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    reply = right.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.usage.completion_tokens >= 1


def test_health_and_docs_need_no_key(keyed):
    assert requests.get(keyed.url + "/health", timeout=10).json() == {"status": "ok", "models": ["tiny"]}
    assert requests.get(keyed.url + "/docs", timeout=10).status_code == 200


def test_a_full_queue_answers_503_with_retry_after_and_serves_the_rest(keyed):
    """Both slots busy with long streams: of 70 more requests, the queue holds what it can and the
    rest are refused at once with 503 and Retry-After; the held ones are served once slots free up."""
    headers = {"Authorization": f"Bearer {KEY}"}
    long = {"model": "tiny", "prompt": "1, 2, 3, 4,", "max_tokens": 400, "stream": True}
    long |= {"temperature": 0, "repetition_penalty": 1.0}  # counts on without stopping
    streams = [
        requests.post(keyed.url + "/v1/completions", json=long, headers=headers, stream=True, timeout=30)
        for _ in range(2)
    ]
    try:
        # Held on to: requests closes the connection when a line iterator is dropped mid-stream.
        lines = [stream.iter_lines() for stream in streams]
        assert all(next(line) for line in lines)  # generating: both slots are taken

        def short(i: int) -> requests.Response:
            body = {"model": "tiny", "prompt": f"Hi {i}", "max_tokens": 1}
            return requests.post(keyed.url + "/v1/completions", json=body, headers=headers, timeout=60)

        with ThreadPoolExecutor(70) as pool:
            futures = [pool.submit(short, i) for i in range(70)]
            refused = next(f.result() for f in as_completed(futures))  # the refusals come back first
            assert refused.status_code == 503
            for stream in streams:
                stream.close()
            answers = [f.result() for f in futures]
    finally:
        for stream in streams:
            stream.close()
    busy = [a for a in answers if a.status_code == 503]
    assert busy and all(a.status_code == 200 for a in answers if a not in busy)
    assert len(answers) - len(busy) >= 2
    for answer in busy:
        assert answer.headers["Retry-After"] == "1"
        assert answer.json()["error"]["code"] == "engine_busy"


def test_the_remote_engine_sends_the_api_key(keyed, monkeypatch):
    with pytest.raises(RemoteRejected, match="401"):
        load_engine(keyed.url + "/v1", api_key="not-it")
    monkeypatch.setenv("HEARTH_API_KEY", KEY)  # what HEARTH_MODEL=http://... users set
    remote = load_engine(keyed.url + "/v1")
    try:
        completion = remote.submit(
            "The capital of France is", SamplingParams(temperature=0, max_new_tokens=3)
        ).result(30)
        assert completion.usage.completion_tokens == 3
    finally:
        remote.close()


@pytest.mark.parametrize(
    ("host", "key", "insecure", "allowed"),
    [
        ("127.0.0.1", None, False, True),
        ("localhost", None, False, True),
        ("::1", None, False, True),
        ("0.0.0.0", None, False, False),
        ("example.com", None, False, False),  # a name may resolve to anything
        ("0.0.0.0", "k", False, True),
        ("0.0.0.0", None, True, True),
    ],
)
def test_only_loopback_may_go_without_a_key(host, key, insecure, allowed):
    def make() -> ServerSettings:
        return ServerSettings(host=host, api_key=key, insecure=insecure)

    if allowed:
        assert make().host == host
    else:
        with pytest.raises(ValidationError, match="refusing to listen"):
            make()


def test_model_specs_name_their_uid_or_go_by_their_own_name():
    assert parse_spec("chat=default") == ("chat", "default")
    assert parse_spec("default") == (None, "default")
    assert parse_spec("relay=http://10.0.0.2:8000/v1#m") == ("relay", "http://10.0.0.2:8000/v1#m")
    assert parse_spec("http://10.0.0.2:8000/v1?a=b") == (None, "http://10.0.0.2:8000/v1?a=b")
    assert parse_spec("models/a=b.gguf") == (None, "models/a=b.gguf")
