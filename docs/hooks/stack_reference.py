"""MkDocs hook: the site's build fails while the committed stack reference is not what `iluvatar reference` writes.

docs/reference/stack.md is generated Markdown, committed so that it reads the same on GitHub (iluvatar/reference.py
writes its tables from the model); the site serves it as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from iluvatar.reference import REGENERATE, ReferenceError, reference  # noqa: E402 - after the checkout is on the path

PAGE = "reference/stack.md"


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    try:
        current = reference(markdown)
    except ReferenceError as e:
        raise PluginError(str(e)) from None
    if current != markdown:
        raise PluginError(f"docs/{PAGE} is stale (the model, keys.yaml or a version table changed); regenerate it: .venv/bin/{REGENERATE}")
    return markdown
