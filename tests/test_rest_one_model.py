"""A server serving one model, as MLC's and llama.cpp's servers do: a request naming another model is
answered by the one served (seed 001's example sends "vicuna-v1-7b"), `--strict-model-names` refuses
it; `max_tokens` goes up to what the context leaves; OpenAI fields that ask nothing of a local model
are ignored. Real servers (`python -m llm.rest`), the official `openai` client and `requests`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest
import requests
from support.rest import hearth_server

CTX = 4096
MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def server():
    flags = ["--model", "default", "--ctx-size", str(CTX), "--parallel", "1", "--threads", "1"]
    with hearth_server(*flags) as process:
        yield process


def whole_log(server) -> str:
    return Path(server.log.name).read_text(errors="replace")


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_a_request_naming_another_model_is_answered_by_the_one_served(server, client):
    for _ in range(2):
        reply = client.chat.completions.create(model="vicuna-v1-7b", messages=MESSAGES, max_tokens=4)
        assert reply.model == "default" and reply.choices[0].message.content
    text = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon", max_tokens=2)
    assert text.model == "default"
    reset = requests.post(server.url + "/chat/reset", json={"model": "vicuna-v1-7b"}, timeout=10)
    assert reset.status_code == 200 and reset.json()["model"] == "default"
    log = whole_log(server)
    assert log.count("requests for model 'vicuna-v1-7b' are answered by 'default'") == 1  # once per name
    assert log.count("requests for model 'gpt-3.5-turbo-instruct' are answered by 'default'") == 1


def test_strict_model_names_refuse_another_model_with_the_list():
    flags = ["--model", "default", "--ctx-size", "512", "--parallel", "1", "--threads", "1"]
    with hearth_server(*flags, "--strict-model-names") as strict:
        client = openai.OpenAI(base_url=strict.url + "/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model="vicuna-v1-7b", messages=MESSAGES, max_tokens=2)
        assert missing.value.code == "model_not_found" and "served: default" in missing.value.message
        assert (
            client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=2).model
            == "default"
        )


def test_max_tokens_beyond_the_old_cap_is_accepted_up_to_the_context(client):
    # 2000 > the old le=1024: accepted. A greedy reply to this ends long before (eos); a stop on length
    # at 2000 would take minutes on this machine.
    reply = client.chat.completions.create(model="default", messages=MESSAGES, temperature=0, max_tokens=2000)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert 0 < reply.usage.completion_tokens <= 2000
    text = client.completions.create(
        model="default", prompt="Once upon a time", max_tokens=2000, temperature=0
    )
    assert text.choices[0].finish_reason in ("stop", "length")
    # The prompt and the reply asked for must fit the context: one token too many is the existing 400.
    room = CTX - reply.usage.prompt_tokens
    assert client.chat.completions.create(model="default", messages=MESSAGES, temperature=0, max_tokens=room)
    with pytest.raises(openai.BadRequestError) as overflow:
        client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=room + 1)
    assert overflow.value.code == "context_length_exceeded" and overflow.value.param == "messages"
    assert f"with room for {room + 1} new tokens" in overflow.value.message
    with pytest.raises(openai.BadRequestError) as overflow:
        client.completions.create(model="default", prompt="Once upon a time", max_tokens=CTX)
    assert overflow.value.code == "context_length_exceeded" and overflow.value.param == "prompt"


def test_openai_fields_that_ask_nothing_of_a_local_model_are_ignored_and_logged(server, client):
    for _ in range(2):
        reply = client.chat.completions.create(
            model="default",
            messages=MESSAGES,
            max_tokens=2,
            store=True,
            metadata={"team": "a"},
            service_tier="auto",
            modalities=["text"],
        )
        assert reply.choices[0].message.content is not None
    assert whole_log(server).count("ignoring the OpenAI field 'store'") == 1
    with pytest.raises(openai.BadRequestError) as audio:
        client.chat.completions.create(model="default", messages=MESSAGES, modalities=["text", "audio"])
    assert audio.value.param == "modalities"
    # Not an OpenAI field: a typo would change the reply's meaning, so it is refused, named.
    bad = requests.post(
        server.url + "/v1/chat/completions", json={"messages": MESSAGES, "temprature": 0}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temprature"


def test_mlc_rest_example_runs_against_a_server_of_another_model(server):
    """Seed 001's example (examples/mlc_rest.py: verbatim but for its stream reader, see there), at
    the server's address: it names "vicuna-v1-7b", which the one model served answers."""
    source = (Path(__file__).resolve().parents[1] / "examples" / "mlc_rest.py").read_text()
    source = source.replace("http://127.0.0.1:8000", server.url)
    done = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.startswith("Without streaming:\n") and "Reset chat: <Response [200]>" in out
    streamed = out.split("With streaming:\n", 1)[1].split("Runtime stats:", 1)[0]
    assert streamed.strip()
    assert "'default'" in out.split("Runtime stats:", 1)[1]
