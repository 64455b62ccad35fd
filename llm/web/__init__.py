"""The browser app's room: everything only the Chainlit app (app.py) uses — chat sessions and their
model, the settings panel, replies and their stats line, reopened threads, the history store and
login. The only package besides app.py that imports chainlit; no face (LangChain, MLC, Nano, REST)
imports it."""
