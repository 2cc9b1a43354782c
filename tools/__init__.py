"""Tools: the real programs generated artifacts are checked with, built from pinned Go modules.

Each checker or upstream CLI is a folder with its own go.mod; `tools.gotools` builds them.
"""
