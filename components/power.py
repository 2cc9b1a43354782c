"""Power: the steps that power each Arda machine on when Pulumi needs it (`iluvatar:arda:Power`).

One step per machine whose inventory entry says how (`power`, plans.power), handed to
`TalosCluster` as `power_on`, so the machine's apply step waits for it:

- Wake-on-LAN: a remote command on the Pi that holds the Ainur's service address (whichever serves
  netboot: plans.power.sender_address) that asks the machine's Talos API and broadcasts the magic
  packet on the LAN only when it does not answer;
- a Turing Pi 2 BMC: a local command, `iluvatar power bmc`, with the BMC's password on stdin (a
  Pulumi secret); with `flash`, its first run writes the disk image when Talos does not answer.

A machine new to the deployment has its step wait for the Ainur's netboot to serve (a machine powered on
before its DHCP and PXE server would boot to nothing). A step's inputs are the machine itself (its MAC,
address, BMC slot), never the versions or patches: it runs when the machine comes or is replaced, not on
every change of Arda, so a roll of machines already on waits on no Pi and no BMC (plans.power).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.arda import TalosConfig
from components.steps import secret_stdin
from plans import k3s
from plans import power as plan
from plans.timeouts import engine_timeout
from stacks import day2
from stacks.day2 import DeployedArda
from stacks.model import Node, StackConfig


@dataclass(frozen=True)
class PowerArgs:
    """The machines' power-on: the stack, their configs, the secrets it takes and what it waits for.

    `after`: what the step of a machine new to the deployment waits for (the Ainur's netboot serving);
    `deployed`: what the last deployment ran on Arda (a machine in it, with the same MAC, is installed).
    """

    stack: StackConfig
    config: TalosConfig
    bmc_passwords: pulumi.Output[dict[str, str]] | None = None
    ssh_private_key: pulumi.Output[str] | None = None
    after: Sequence[pulumi.Resource] = ()
    deployed: DeployedArda = field(default_factory=DeployedArda)


class Power(pulumi.ComponentResource):
    """The power-on step of every Arda machine that has one, by machine name."""

    steps: dict[str, pulumi.Resource]

    def __init__(self, name: str, args: PowerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("iluvatar:arda:Power", name, None, opts)
        stack = args.stack
        commands = command.Provider(f"{name}-command", opts=pulumi.ResourceOptions(parent=self))
        renamed = day2.former_names(stack, args.deployed.nodes)
        self.steps = {}
        for node in stack.arda_nodes:
            if node.power is None:
                continue
            step_name = f"{name}-{node.name}"
            # Netboot matters to a machine that boots it for the first time; one installed boots from its disk, and its
            # step waits on no Ainur object (a Talos upgrade changes some, which may wait on a Pi or fail with the API down).
            after = () if day2.installed(node, args.deployed, renamed.get(node.name)) else args.after
            if node.power.wake_on_lan is not None:
                self.steps[node.name] = self._wake(step_name, node, args, commands, after)
            elif node.power.bmc is not None:
                self.steps[node.name] = self._bmc(step_name, node, args, commands, after)
        self.register_outputs({})

    def _wake(self, name: str, node: Node, args: PowerArgs, commands: command.Provider, after: Sequence[pulumi.Resource]) -> command.remote.Command:
        stack = args.stack
        assert stack.ainur is not None  # stacks.power: Wake-on-LAN needs the Ainur
        wake = plan.wake_command(stack, node)
        return command.remote.Command(
            name,
            connection=command.remote.ConnectionArgs(
                host=str(plan.sender_address(stack)),
                user=stack.ainur.ssh_user,
                private_key=args.ssh_private_key,
                # The Pi may still be booting: retry while sshd comes up, as its join does (plans.k3s).
                dial_error_limit=k3s.SSH_DIAL_ATTEMPTS,
                per_dial_timeout=k3s.SSH_DIAL_SECONDS,
            ),
            create=wake,
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=commands,
                depends_on=list(after),
                custom_timeouts=pulumi.CustomTimeouts(create=plan.WAKE_TIMEOUT, update=plan.WAKE_TIMEOUT),
            ),
        )

    def _bmc(self, name: str, node: Node, args: PowerArgs, commands: command.Provider, after: Sequence[pulumi.Resource]) -> command.local.Command:
        config = args.config
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
            # The factory serves the disk image only once it was sent the board's schematic.
            after = [*after, config.schematics[node.board]]
        password = args.bmc_passwords.apply(lambda passwords: passwords[address])
        return command.local.Command(
            name,
            create=create,
            update=power_on.command,
            stdin=secret_stdin({"password": password}),
            # The machine, not its versions: a module replaced in the slot (another MAC) is powered on again.
            environment={"ILUVATAR_MAC": node.mac},
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=commands,
                depends_on=list(after),
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=power_on.engine_timeout),
            ),
        )
