# MLC-Chat's REST example (seed 001): start `python -m llm.rest --model default` first. The server
# serves one model, so the "vicuna-v1-7b" the example names is answered by it.
#
# Verbatim but for the two lines that read the stream. The seed's `for chunk in r:` reads the body 128
# bytes at a time (requests' `Response.__iter__`) and parses each piece as one whole event: that held
# only for MLC's server, whose events were ~100 bytes (no id, no model) and which never sent OpenAI's
# closing `data: [DONE]`. An OpenAI-compatible event (Hearth's, llama.cpp's, vLLM's) is longer than
# 128 bytes, so the reader goes by lines, as server-sent events are defined.
import requests
import json

# Get a response using a prompt without streaming
payload = {
   "model": "vicuna-v1-7b",
   "messages": [{"role": "user", "content": "Write a haiku"}],
   "stream": False
}
r = requests.post("http://127.0.0.1:8000/v1/chat/completions", json=payload)
print(f"Without streaming:\n{r.json()['choices'][0]['message']['content']}\n")

# Reset the chat
r = requests.post("http://127.0.0.1:8000/chat/reset", json=payload)
print(f"Reset chat: {str(r)}\n")

# Get a response using a prompt with streaming
payload = {
   "model": "vicuna-v1-7b",
   "messages": [{"role": "user", "content": "Write a haiku"}],
   "stream": True
}
with requests.post("http://127.0.0.1:8000/v1/chat/completions", json=payload, stream=True) as r:
   print(f"With streaming:")
   for chunk in r.iter_lines():
      if chunk.startswith(b"data: {"):  # a chunk of the reply, not the blank separator or [DONE]
         content = json.loads(chunk[6:])["choices"][0]["delta"].get("content", "")
         print(f"{content}", end="", flush=True)
   print("\n")

# Get the latest runtime stats
r = requests.get("http://127.0.0.1:8000/stats")
print(f"Runtime stats: {r.json()}\n")
