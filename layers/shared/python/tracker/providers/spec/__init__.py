"""Providers declared in data: a spec file (``specs/<name>.yaml``) describes an asynchronous HTTP job API
and its job type is ``http:<name>``. model.py is the format, evaluate.py what a spec says about one
request or answer, loader.py how a decoded document becomes a spec (and the JSON bundle Lambda reads)."""
