"""Entry point for `python -m iluvatar`."""

import sys

from iluvatar.cli import main

sys.exit(main())
