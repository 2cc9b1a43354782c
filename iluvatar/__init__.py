"""Iluvatar's offline command line: check and inspect a stack without the Pulumi CLI."""

import os

# The process that started this one, read before anything else is imported (the command line's imports
# take about half a second): `iluvatar upgrader` checks it is still its parent once it has asked the kernel
# to stop it when that parent dies (iluvatar.lifeline).
PARENT = os.getppid()
