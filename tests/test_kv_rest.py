"""The KV cache tiers as an OpenAI client sees them: `python -m llm.rest`, the official `openai` client,
no session field (how every OpenAI-compatible client calls), more conversations than slots, and a
server stopped with SIGTERM and started again."""

from __future__ import annotations

import openai
import pytest
import requests
from support.rest import hearth_server

TURNS = 4
REPLY = {"temperature": 0, "max_tokens": 24}


def server_on(data_dir, parallel: int, ctx: int = 2048):
    flags = ["--model", "default", "--parallel", str(parallel), "--ctx-size", str(ctx), "--threads", "2"]
    return hearth_server(*flags, env={"HEARTH_DATA_DIR": str(data_dir), "HEARTH_CACHE_IDLE_S": "1"})


def client_of(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def interleave(client: openai.OpenAI, conversations: int) -> list[list]:
    """`conversations` chats of TURNS turns, one turn of each in turn; the usage of every reply."""
    chats = [
        [{"role": "user", "content": f"Conversation {i}: tell me about the number {i * 7}."}]
        for i in range(conversations)
    ]
    usages: list[list] = [[] for _ in chats]
    for turn in range(TURNS):
        for i, messages in enumerate(chats):
            reply = client.chat.completions.create(model="default", messages=messages, **REPLY)
            usages[i].append(reply.usage)
            messages += [
                {"role": "assistant", "content": reply.choices[0].message.content},
                {"role": "user", "content": f"And what comes after that? ({turn})"},
            ]
    return usages


def assert_each_turn_reuses_its_own_history(usages: list[list]) -> None:
    for turns in usages:
        for before, now in zip(turns, turns[1:], strict=False):
            # The previous prompt and reply are cached, give or take the re-tokenized boundary.
            previous = before.prompt_tokens + before.completion_tokens
            assert now.prompt_tokens_details.cached_tokens >= previous - 4


@pytest.mark.parametrize("conversations, slots", [(4, 8), (12, 4)])
def test_stateless_conversations_reuse_their_own_cache(conversations, slots, tmp_path):
    with server_on(tmp_path, slots) as server:
        usages = interleave(client_of(server), conversations)
        cache = requests.get(server.url + "/stats", timeout=10).json()["models"]["default"]["cache"]
    assert_each_turn_reuses_its_own_history(usages)
    if conversations > slots:
        assert cache["ram"]["hits"] >= conversations  # evicted conversations came back from RAM
    else:
        assert cache["ram"]["hits"] == 0  # every conversation kept a slot of its own


def test_a_session_survives_a_restart(tmp_path):
    words = " ".join(f"item {i} is {'red' if i % 3 else 'blue'}," for i in range(450))
    messages = [{"role": "user", "content": f"Remember these notes: {words}"}]
    with server_on(tmp_path, 2, ctx=4096) as server:
        first = client_of(server).chat.completions.create(
            model="default", messages=messages, extra_body={"session_id": "notes"}, **REPLY
        )
        assert first.usage.prompt_tokens >= 2000
    # The fixture stopped the server with SIGTERM: its session's cache is on disk.
    assert list((tmp_path / "kv").glob("*.kv"))
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Which item was blue?"},
    ]
    with server_on(tmp_path, 2, ctx=4096) as server:
        again = client_of(server).chat.completions.create(
            model="default", messages=messages, extra_body={"session_id": "notes"}, **REPLY
        )
        stats = requests.get(server.url + "/stats", timeout=10).json()["models"]["default"]["cache"]
    assert again.usage.prompt_tokens_details.cached_tokens >= 2000
    assert stats["disk"]["hits"] == 1 and stats["disk"]["tokens_saved"] >= 2000
