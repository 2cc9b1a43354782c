"""The log keys of the stack model (`iluvatar:logs`): how long the log store keeps what every machine sends, on what.

Kept apart from `stacks.model` (whose `StackConfig` holds it) so that the layer that owns it changes one module, as
`stacks.data_model` is; it builds on `stacks.fields`. The rules that relate it to the rest of the stack, each naming its
config path, are `stacks.logs`; what it becomes is `plans.logs`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from stacks.fields import IPv4, Model, _pattern

# VictoriaLogs' -retentionPeriod takes hours, days, weeks or years (lib/flagutil.NewRetentionDuration).
_RETENTION = re.compile(r"^[1-9]\d*[hdwy]$")
_VOLUME_SIZE = re.compile(r"^[1-9]\d*Gi$")
_DAILY = re.compile(r"^[1-9]\d*(Mi|Gi)$")

Retention = Annotated[str, _pattern(_RETENTION, "14d", "retention (hours, days, weeks or years)")]
VolumeSize = Annotated[str, _pattern(_VOLUME_SIZE, "20Gi", "volume size in Gi")]
DailyVolume = Annotated[str, _pattern(_DAILY, "500Mi", "size a day (Mi or Gi)")]


class Logs(Model):
    """`iluvatar:logs`: the log store on Arda (VictoriaLogs) and what every machine sends it; on with `iluvatar:monitoring`."""

    # False leaves logs out of a stack with monitoring (the Talos machines send nothing, nothing is collected).
    enabled: bool = True
    # How long the store keeps a line; it also drops the oldest days before its volume is full (plans.logs).
    retention: Retention = "14d"
    size: VolumeSize = "20Gi"
    # None: Arda's default StorageClass (storage.arda.defaultClass).
    storage_class: Literal["ceph-block", "ceph-filesystem", "local-path", "nfs"] | None = None
    # Once, after logs were turned off: the store's claim was changed by hand (deleted, or grown to `size`), so the
    # store that comes back may have `size` and `storageClass` though the last record says otherwise (stacks.day2,
    # docs/day2.md#the-log-stores-size-or-class). Refused while the store runs: remove it after that `up`.
    claim_changed: bool = False
    # What the store writes a day, compressed, once you know it (Grafana's logs dashboard shows it); None: the estimate
    # from the inventory (stacks.logs.estimate), which the retention must fit in the volume at.
    daily_volume: DailyVolume | None = None
    # Where the Pis send their journals and their pods' logs (a load-balancer pool address); None: the pool's fourth
    # address from the top (the edge takes the top three).
    address: IPv4 | None = None
