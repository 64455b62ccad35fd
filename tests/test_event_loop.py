"""The event loop every chat of the app shares never waits on one chat's work: rendering, fitting and
tokenizing a prompt, and submitting it, run off the loop. Measured with a 10 ms ticker on the loop
while one chat streams and another sends a message over a history longer than the context."""

from __future__ import annotations

import asyncio

from langchain_core.messages import AIMessage, HumanMessage

from llm import ChatHearth, HearthLLM
from llm.heap import settle

TICK = 0.01


class Ticker:
    """How late a 10 ms sleep on the loop wakes up: the longest stall of the loop."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            started = loop.time()
            await asyncio.sleep(TICK)
            self.worst = max(self.worst, loop.time() - started - TICK)

    def stop(self) -> None:
        self._stop.set()


def long_history(engine, tokens: int) -> list:
    """Turns of about 150 tokens each, `tokens` in all: past a 4,096-token context, so turns are dropped."""
    turn = " ".join(f"word{i}" for i in range(60))
    history: list = []
    while len(engine.tokenize(" ".join(m.content for m in history))) < tokens:
        history += [HumanMessage(f"Tell me more. {turn}"), AIMessage(f"Here is more. {turn}")]
    return history


async def test_a_message_over_a_long_history_does_not_stall_other_chats(engine):
    settle()  # as the app and the REST server do once started (llm/heap.py)
    history = long_history(engine, 10_000)
    streaming = ChatHearth(engine=engine, temperature=0.0, max_new_tokens=96, session_id="loop-a")
    long_chat = ChatHearth(engine=engine, temperature=0.0, max_new_tokens=8, session_id="loop-b")
    ticker = Ticker()
    ticking = asyncio.create_task(ticker.run())
    try:
        story = streaming.astream([HumanMessage("Write a long story about a dragon.")])
        await anext(story)  # the first chat streams...
        # ... while the second sends a message over 10,000 tokens of history, twice.
        for _ in range(2):
            reply = await long_chat.ainvoke([*history, HumanMessage("And then?")])
            assert reply.response_metadata["finish_reason"] in ("stop", "length")
        async for _ in story:
            pass
        # The plain LLM's path too.
        await HearthLLM(engine=engine, max_new_tokens=4).ainvoke(" ".join(m.content for m in history[:10]))
    finally:
        ticker.stop()
        await ticking
    print(f"worst stall of the loop: {ticker.worst * 1000:.1f} ms")
    assert ticker.worst <= 0.05, f"the loop stalled {ticker.worst * 1000:.0f} ms"
