"""Power: the steps that power each Arda machine on when Pulumi needs it (`iluvatar:arda:Power`).

One step per machine whose inventory entry says how (`power`, plans.power), handed to
`TalosCluster` as `power_on`, so the machine's apply step waits for it:

- Wake-on-LAN: a remote command on the first valar (after its join: cloud-init done, SSH up) that
  broadcasts the magic packet on the LAN;
- a Turing Pi 2 BMC: a local command, `iluvatar power bmc`, with the BMC's password on stdin (a
  Pulumi secret); with `flash`, its first run writes the disk image when Talos does not answer.

Every step waits for the Ainur's netboot to serve (a machine powered on before its DHCP and PXE
server would boot to nothing), and runs again whenever the machine's apply does: the same
`ILUVATAR_*` values (Talos and Kubernetes versions, installer, patches digest) are its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.arda import TalosConfig, about
from components.steps import secret_stdin
from plans import k3s
from plans import power as plan
from plans.timeouts import engine_timeout
from stacks.model import Node, StackConfig


@dataclass(frozen=True)
class PowerArgs:
    """The machines' power-on: the stack, their configs, the secrets it takes and what it waits for.

    `senders`: the Pis' joins by name (the magic packet goes out from the first valar once it has
    joined); `after`: what every step waits for (the Ainur's netboot serving).
    """

    stack: StackConfig
    config: TalosConfig
    bmc_passwords: pulumi.Output[dict[str, str]] | None = None
    ssh_private_key: pulumi.Output[str] | None = None
    senders: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    after: Sequence[pulumi.Resource] = ()


class Power(pulumi.ComponentResource):
    """The power-on step of every Arda machine that has one, by machine name."""

    steps: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: PowerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:Power", name, None, opts)
        stack = args.stack
        commands = command.Provider(f"{name}-command", opts=pulumi.ResourceOptions(parent=self))
        self.steps = {}
        for node in stack.arda_nodes:
            if node.power is None:
                continue
            step_name = f"{name}-{node.name}"
            if node.power.wake_on_lan is not None:
                self.steps[node.name] = self._wake(step_name, node, args, commands)
            elif node.power.bmc is not None:
                self.steps[node.name] = self._bmc(step_name, node, args, commands)
        self.register_outputs({})

    def _wake(self, name: str, node: Node, args: PowerArgs, commands: command.Provider) -> command.remote.Command:
        stack = args.stack
        assert stack.ainur is not None  # stacks.power: Wake-on-LAN needs the Ainur
        sender = plan.sender(stack)
        values = about(stack, args.config, node)
        wake = pulumi.Output.all(**values).apply(lambda v: plan.wake_command(stack, node, v))
        return command.remote.Command(
            name,
            connection=command.remote.ConnectionArgs(
                host=str(sender.ip),
                user=stack.ainur.ssh_user,
                private_key=args.ssh_private_key,
                # The Pi may still be booting: retry while sshd comes up, as its join does (plans.k3s).
                dial_error_limit=k3s.SSH_DIAL_ATTEMPTS,
                per_dial_timeout=k3s.SSH_DIAL_SECONDS,
            ),
            create=wake,
            update=wake,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=commands,
                depends_on=[*([args.senders[sender.name]] if sender.name in args.senders else []), *args.after],
                custom_timeouts=pulumi.CustomTimeouts(create=plan.WAKE_TIMEOUT, update=plan.WAKE_TIMEOUT),
            ),
        )

    def _bmc(self, name: str, node: Node, args: PowerArgs, commands: command.Provider) -> command.local.Command:
        stack, config = args.stack, args.config
        assert node.power is not None
        assert node.power.bmc is not None
        assert args.bmc_passwords is not None  # stacks.power: every BMC has its password
        address = str(node.power.bmc.address)
        power_on = plan.bmc_step(node)
        # Flashing is for the first run only (create): a later change of the machine powers it on, never rewrites its disk.
        create: pulumi.Input[str] = power_on.command
        timeout = power_on.engine_timeout
        if node.power.bmc.flash:
            create = config.disk_images[node.name].apply(lambda image: plan.bmc_step(node, image).command)
            timeout = engine_timeout(plan.FLASH_TIMEOUT)
        password = args.bmc_passwords.apply(lambda passwords: passwords[address])
        return command.local.Command(
            name,
            create=create,
            update=power_on.command,
            stdin=secret_stdin({"password": password}),
            environment={f"ILUVATAR_{k}": v for k, v in sorted(about(stack, config, node).items())},
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=commands,
                depends_on=list(args.after),
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=power_on.engine_timeout),
            ),
        )
