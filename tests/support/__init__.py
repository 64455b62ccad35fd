"""Helpers the tests share; no tests here. `support.rest` starts real servers (Hearth's REST server,
llama-cpp-python's), `support.browser` runs the Chainlit app and drives its page in Chromium,
`support.wait` waits for a condition with a deadline instead of sleeping."""
