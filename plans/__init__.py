"""Plans: everything Iluvatar derives from the inventory, as plain data and text.

No Pulumi here. Components wire these results into resources; tests and the offline
commands call them directly.
"""
