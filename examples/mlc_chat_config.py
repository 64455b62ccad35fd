import llm.mlc as mlc_chat
from llm.mlc import ChatConfig, ConvConfig
from llm.mlc.callback import StreamToStdout

# Using a `ConvConfig`, we modify `system`, a field in the conversation template
# `system` refers to the prompt encoded before starting the chat
conv_config = ConvConfig(system='Please show as much happiness as you can when talking to me.')

# We then include the `ConvConfig` instance in `ChatConfig` while overriding `max_gen_len`
# Note that `conv_config` is an optional subfield of `chat_config`
chat_config = ChatConfig(max_gen_len=256, conv_config=conv_config)

# Using the `chat_config` we created, instantiate a `ChatModule`
cm = mlc_chat.ChatModule('default', chat_config=chat_config)

output = cm.generate(
   prompt="What is one plus one?",
   progress_callback=StreamToStdout(callback_interval=2),
)

# You could also pass in a `ConvConfig` instance to `reset_chat()`
conv_config = ConvConfig(system='Please show as much sadness as you can when talking to me.')
chat_config = ChatConfig(max_gen_len=128, conv_config=conv_config)
cm.reset_chat(chat_config)

output = cm.generate(
   prompt="What is one plus one?",
   progress_callback=StreamToStdout(callback_interval=2),
)
