"""Entry point for `python -m iluvatar`."""

from iluvatar.cli import run

run()
