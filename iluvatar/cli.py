"""The `iluvatar` command (also `python -m iluvatar`): write, check, render and draw a stack, offline (no Pulumi CLI or network).

Every command takes the stack the same way: a stack name (`homelab`), found as `Pulumi.<name>.yaml`,
or the path of a stack file (`Pulumi.homelab.yaml`, `../lab/Pulumi.test.yaml`). A name is looked up in
`--project` when given; else in the current folder first, then in the project folder (the nearest folder
at or above the current one holding a `Pulumi.yaml`, as `pulumi` finds it), and outside any project in
this checkout.

Exit codes: 0 success; 1 the stack config is invalid (every problem listed, one a line);
2 the command could not run (unknown stack, missing file, not YAML, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import difflib
import gc
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# The loader (pydantic, jsonschema: ~0.3 s of CPU) is imported by the commands that read a stack, not here:
# `--help`, a usage error and `iluvatar power bmc` (which `pulumi up` runs) need none of it.
from stacks.errors import StackConfigError, StackFileError, UnsetSecret

if TYPE_CHECKING:
    from stacks.load import StackFile
    from stacks.model import StackConfig

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = "Pulumi.yaml"
DEFAULT_DOMAIN = "lab.home.arpa"  # iluvatar.init.DOMAIN (that module loads only when init runs)


class CommandError(Exception):
    """A one-line reason the command cannot run (exit 2), printed without a traceback."""


def find_project(start: Path | None = None) -> Path:
    """The project folder for stack names: the nearest `Pulumi.yaml` at or above `start`, else this checkout."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    return ROOT


def is_path(stack: str) -> bool:
    """A stack argument is a file path when it names a YAML file or a folder; otherwise a stack name."""
    return stack.endswith((".yaml", ".yml")) or "/" in stack or os.sep in stack


def search_folders(project: Path | None = None) -> list[Path]:
    """Where a stack name is looked for, in order: `--project` alone when given; else the current folder, then the
    project folder (`find_project`: the nearest `Pulumi.yaml`, else this checkout). Each folder once."""
    if project is not None:
        return [project]
    here = Path.cwd().resolve()
    folders = [here]
    found = find_project(here)
    if found.resolve() != here:
        folders.append(found)
    return folders


def _stacks_in(folder: Path) -> str:
    return ", ".join(sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in folder.glob("Pulumi.*.yaml"))) or "none"


def _stack_hint(name: str, folders: list[Path]) -> str:
    """The fix for a stack name that names no file: the stack it is a typo of, or `init` where there is none."""
    names = sorted({p.name.removeprefix("Pulumi.").removesuffix(".yaml") for f in folders for p in f.glob("Pulumi.*.yaml")})
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.75)
    if close:
        return f"; did you mean {close[0]}?"
    return f"; write it with `{_command_name()} init {name}`" if not names else ""


def stack_file(name: str, project: Path | None = None) -> Path:
    """The stack file for a stack name or a stack file path (relative to the current folder)."""
    if is_path(name):
        return Path(name)
    folders = search_folders(project)
    for folder in folders:
        path = folder / f"Pulumi.{name}.yaml"
        if path.is_file():
            return path
    here = Path.cwd().resolve()
    where = [("here" if f.resolve() == here else f"in {shown(f)}", f) for f in folders]
    if len(where) == 1:
        label, folder = where[0]
        raise CommandError(
            f"no stack {name!r}: {shown(folder / f'Pulumi.{name}.yaml')} does not exist (stacks {label}: {_stacks_in(folder)})"
            + _stack_hint(name, folders)
        )
    looked = " nor ".join(label for label, _ in where)
    known = "; ".join(f"{label}: {_stacks_in(f)}" for label, f in where)
    raise CommandError(f"no stack {name!r}: Pulumi.{name}.yaml is neither {looked} (stacks {known}){_stack_hint(name, folders)}")


def shown(path: Path) -> str:
    """A path as the user can best read it: relative to the current folder when inside it, else absolute."""
    try:
        rel = os.path.relpath(path.resolve(), Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(path.resolve()) if rel.startswith("..") else rel


def _resolve(args: argparse.Namespace) -> Path:
    """The stack file the command's STACK argument (or the older --stack NAME) names."""
    if args.stack is not None and args.stack_option is not None:
        raise CommandError(f"give the stack once: {args.stack!r} or --stack {args.stack_option!r}")
    stack = args.stack if args.stack is not None else args.stack_option
    if stack is None:
        raise CommandError(f"{args.command}: which stack? give a stack name (e.g. homelab) or a Pulumi.<stack>.yaml path")
    project = Path(args.project) if args.project is not None else None
    if project is not None and not project.is_dir():
        raise CommandError(f"--project {project}: no such folder")
    path = stack_file(stack, project)
    return Path(shown(path)) if not is_path(stack) else path


def _mode(bits: int) -> int:
    """Permission bits as a plain open() would create them under the user's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return bits & ~umask


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CommandError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CommandError(f"{out} exists and is not empty; pass --force to replace it")


def write_atomically(out: Path, write: Callable[[Path], None]) -> None:
    """Write into a fresh folder beside `out`, then swap it in: a failure leaves `out` untouched."""
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except OSError as e:
        raise CommandError(f"cannot write to {parent}: {e.strerror or e}") from None
    try:
        staging.chmod(_mode(0o777))
        write(staging)
        if out.exists():
            old = parent / f".{out.name}.replaced-{os.getpid()}"
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old)
        else:
            staging.rename(out)
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise CommandError(f"cannot write {out}: {e.strerror or e}") from None


EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
# The cyclic garbage collector's thresholds for a command (run()): a young generation of 200,000 objects, not 700.
GC_THRESHOLDS = (200_000, 30, 30)


def _validate(args: argparse.Namespace) -> int:
    from iluvatar.summary import summary
    from stacks.load import read_stack_file, validate_stack_file
    from stacks.warn import warnings

    path = _resolve(args)
    sf = read_stack_file(path)
    try:
        # As `pulumi preview` checks it: every secret the stack needs set, each as ciphertext its secrets manager opens.
        stack = validate_stack_file(sf, require_secrets=True)
    except StackConfigError as e:
        whole = _whole_but_secrets(sf, e)
        if whole is None:
            raise
        # Only secrets are unset or unreadable (a new user's first run): the rest of the stack is whole, so what it most
        # likely does not mean is said now too, after the problems, not once the secrets are set.
        print(e.report(), file=sys.stderr)
        sys.stderr.flush()
        for warning in warnings(whole):
            print(f"warning: {warning}")
        return EXIT_INVALID
    print(f"{path}: valid")
    for line in summary(stack):
        print(f"  {line}")
    # What the stack most likely does not mean, as `pulumi preview` logs it; a warning never fails validate.
    for warning in warnings(stack):
        print(f"warning: {warning}")
    return EXIT_OK


def _whole_but_secrets(sf: StackFile, error: StackConfigError) -> StackConfig | None:
    """The stack read without its secrets when `error`'s problems are all secrets unset (UnsetSecret) or whose ciphertext
    its secrets manager cannot open; None when any other problem is among them."""
    from stacks.load import ciphertext_problems

    unreadable = ciphertext_problems(sf)
    if not all(isinstance(p, UnsetSecret) or p in unreadable for p in error.problems):
        return None
    try:
        return sf.parse(require_secrets=False)
    except StackConfigError:
        return None


def _versions(args: argparse.Namespace) -> int:
    from iluvatar.versions import report
    from stacks.load import load_stack_file

    path = _resolve(args)
    stack = load_stack_file(path)
    previous = _previous_outputs(Path(args.previous)) if args.previous is not None else None
    if previous is not None:
        _of_this_deployment(Path(args.previous), previous, stack)
    for line in report(path.name, stack, previous):
        print(line)
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from stacks.load import read_stack_file, validate_stack_file

    path = _resolve(args)
    out = Path(args.out)
    _check_output(out, args.force)
    sf = read_stack_file(path)
    stack = validate_stack_file(sf)  # every problem, as validate reports them, before anything runs
    # A secret not set yet renders as the placeholder every secret renders as; `pulumi preview` needs it, so it is listed.
    unset = sf.unset_secrets()
    # Imported only now: the Pulumi SDK takes a second to load, and a mistake above needs none of it.
    from iluvatar.render import render_files, write_tree
    from iluvatar.simulate import simulate

    previous = _previous_outputs(Path(args.previous), whole=True) if args.previous is not None else None
    if previous is not None:
        _of_this_deployment(Path(args.previous), previous, stack)
    import pulumi

    # The program's warnings (pulumi.log.warn), which the mocks hand to Python's root logger: printed as `validate`
    # prints its own, `warning: ` first, not as the bare message logging's last-resort handler writes.
    shown = logging.StreamHandler(sys.stderr)
    shown.setFormatter(_Severity())
    logging.getLogger().addHandler(shown)
    try:
        now = args.on if args.on is not None else datetime.datetime.now(datetime.UTC)
        files = render_files(simulate(sf, previous=previous, now=now), previous)
    except pulumi.RunError as e:
        # The program's own refusals against the previous deployment (a version change no machine could make).
        print(str(e), file=sys.stderr)
        return EXIT_INVALID
    finally:
        logging.getLogger().removeHandler(shown)
    write_atomically(out, lambda staging: write_tree(files, staging))
    print(f"rendered stack {sf.stack} to {out}: {len(files)} files")
    if unset:
        count = f"{len(unset)} secret{'s' if len(unset) != 1 else ''}"
        print(f"before `pulumi preview`, set the {count} this stack needs (rendered as [secret]; `iluvatar validate` says why each):")
        for secret in unset:
            print(f"  {secret.command}")
    if "rollout.txt" in files:
        print(files["rollout.txt"], end="")
    print("next:")
    for step in next_steps(sf.stack, out, files, change=previous is not None, secrets=bool(unset)):
        print(f"  {step}")
    return EXIT_OK


class _Severity(logging.Formatter):
    """A log record as `iluvatar validate` and Pulumi print a diagnostic: `warning: <message>`."""

    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def next_steps(stack: str, out: Path, files: Mapping[str, str], *, change: bool, secrets: bool) -> list[str]:
    """What to do with a render, in order: read the plan, flash what boots from its own card, then Pulumi."""
    steps = [f"read {out / 'plan.txt'}: every resource `pulumi up` would create, and what each waits for"]
    if change:
        steps[0] = f"read {out / 'rollout.txt'} (above) and {out / 'plan.txt'}: what this change does to each machine"
        return [*steps, "then: `pulumi preview`, and `pulumi up` (docs/day2.md#what-a-change-to-arda-does)"]
    # A Pi with its bootloader's netboot file (netboot/pis/<pi>/bootconf.txt) boots from the Ainur and has no card to flash:
    # its seed is served with its root (plans.netboot); its one step is that bootloader setting.
    netbooting = sorted({f.split("/")[2] for f in files if f.startswith("netboot/pis/") and f.endswith("/bootconf.txt")})
    pis = sorted(
        pi
        for f in files
        if f.startswith("ainur/") and f.endswith(".user-data") and (pi := f.removeprefix("ainur/").removesuffix(".user-data")) not in netbooting
    )
    if pis:
        steps.append(
            f"flash each Pi ({', '.join(pis)}) with Ubuntu Server, then its {out / 'ainur'}/<pi>.user-data and .network-config "
            "(docs/layers/ainur.md#flashing-the-pis)"
        )
    if netbooting:
        steps.append(
            f"set each Pi with no card ({', '.join(netbooting)}) to boot from the network, once, with its "
            f"{out / 'netboot' / 'pis'}/<pi>/bootconf.txt (docs/layers/ainur.md#from-a-pi-with-no-card-to-a-maia-in-the-cluster)"
        )
    if "flash/disk-images.csv" in files:
        boards = sorted(f.removeprefix("flash/schematic-").removesuffix(".yaml") for f in files if f.startswith("flash/schematic-"))
        steps.append(
            f"flash each SBC with its Talos disk image in {out / 'flash' / 'disk-images.csv'}, after sending its schematic "
            f"({', '.join(str(out / 'flash' / f'schematic-{b}.yaml') for b in boards)}) to Image Factory (docs/bring-up.md#1-render)"
        )
    # Whether the stack exists lives in the backend (`pulumi stack ls`), which a render does not ask: `select --create`
    # selects it when it exists and makes it when it does not, so the step is right either way.
    stack_step = f"`pulumi stack select --create {stack}` (makes the stack the first time)"
    then = f"then: {stack_step}, {'the secrets above, ' if secrets else ''}`pulumi preview`, `pulumi up` (docs/bring-up.md)"
    steps.append(then)
    return steps


def _day(text: str) -> datetime.datetime:
    """`--on 2027-10-30`: that day at 00:00 UTC."""
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is not a day as YYYY-MM-DD (e.g. 2027-10-30)") from None


# What json.loads reads from bytes (json.detect_encoding, CPython Lib/json/__init__.py:244-271): UTF-8 with or without a
# byte-order mark, which RFC 8259 section 8.1 lets a parser ignore, UTF-16, which Windows PowerShell 5.1's `>` writes
# `pulumi stack output --json` in, and UTF-32, each with or without a byte-order mark.
OUTPUTS_ENCODINGS = "UTF-8, UTF-16 or UTF-32"


def _outputs_json(flag: str, path: Path, written: str) -> Any:
    """The JSON in an outputs file, in whichever of OUTPUTS_ENCODINGS it is written; one line naming the flag, the file
    and the fix where it cannot be read."""
    try:
        # Bytes, so that json.loads reads the encoding from the first bytes, as OUTPUTS_ENCODINGS says.
        return json.loads(path.read_bytes())
    except OSError as e:
        raise CommandError(f"{flag} {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise CommandError(
            f"{flag} {path}: not text in {OUTPUTS_ENCODINGS}; write it with `pulumi stack output --json --show-secrets > {path.name}`"
        ) from None
    except json.JSONDecodeError as e:
        raise CommandError(f"{flag} {path}: not JSON ({e.msg} at line {e.lineno}); write it with {written}") from None


def _previous_outputs(path: Path, *, whole: bool = False) -> dict[str, Any]:
    """A deployment's outputs as `pulumi stack output --json` (or a render's outputs.json) writes them; with `whole`, all
    of them (stacks.day2.missing): the render plans every layer from them, where `versions` reads only `arda`'s releases."""
    doc = _outputs_json("--previous", path, "`pulumi stack output --json`")
    if not isinstance(doc, dict):
        raise CommandError(f"--previous {path}: not the outputs of a stack (a JSON object), as `pulumi stack output --json` writes them")
    _outputs_of_a_stack(path, doc)
    if whole:
        _whole(path, doc)
    _readable(path, doc)
    return doc


def _outputs_of_a_stack(path: Path, doc: dict[str, Any]) -> None:
    """Refuse a JSON object that is not a stack's outputs, and outputs whose secrets are hidden where the day-2 checks
    read them. `{}` is a stack never deployed: `pulumi stack output --json` prints it for a stack with no state
    (pulumi v3.259.0 pkg/cmd/pulumi/stack/stack_output.go:166-168)."""
    from stacks.day2 import EVERY_DEPLOYMENT, READ_OUTPUTS, hidden

    if doc and not doc.keys() & READ_OUTPUTS.keys():
        # Every deployment writes lan, vips, gateways, loadBalancerPool, arda and storage (__main__.py): a file with none
        # of them would be read as nothing deployed, and every machine of a running cluster planned as new.
        if "deployment" in doc:
            raise CommandError(
                f"--previous {path}: the state `pulumi stack export` writes (version, deployment), not the outputs of a stack; "
                "write those with `pulumi stack output --json`"
            )
        keys = ", ".join(sorted(doc)[:6]) + (", ..." if len(doc) > 6 else "")
        raise CommandError(
            f"--previous {path}: not the outputs of a stack: its keys ({keys}) are none of those every deployment writes "
            f"({', '.join(EVERY_DEPLOYMENT)}); write them with `pulumi stack output --json` (a part of them, such as the "
            "`ainur` output alone, is not enough; a stack never deployed is {})"
        )
    if paths := hidden(doc):
        named = [*paths[:5], f"{len(paths) - 5} more"] if len(paths) > 6 else paths
        shown = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
        raise CommandError(
            f'--previous {path}: {shown} {"is" if len(paths) == 1 else "are"} "[secret]", as `pulumi stack output --json` '
            f"writes a secret without --show-secrets, and the day-2 checks read {'it' if len(paths) == 1 else 'them'}; "
            "write the outputs with `pulumi stack output --json --show-secrets`"
        )


def _whole(path: Path, doc: dict[str, Any]) -> None:
    """Refuse a part of a deployment's outputs (stacks.day2.missing): a file cut short, or outputs an older Iluvatar or
    a failed first `up` wrote, which `pulumi preview` refuses too (stacks.pulumi_source.load)."""
    from stacks.day2 import missing

    why = missing(doc)
    if why is not None:
        raise CommandError(f"--previous {path}: {why}")


def _of_this_deployment(path: Path, outputs: dict[str, Any], stack: StackConfig) -> None:
    """Refuse another deployment's outputs: a LAN other than the stack's and not one machine of its inventory. Planned
    against them, every machine they record and the stack lacks reads as one removed (put back with retire: true), which
    would add another LAN's machines to this stack. (`pulumi preview` reads the stack's own outputs: no such mix-up.)"""
    from stacks import outputs as exports

    lan = outputs.get(exports.LAN)
    recorded = {
        name
        for part in (exports.ARDA, exports.AINUR)
        if isinstance(outputs.get(part), dict) and isinstance(outputs[part].get("nodes"), dict)
        for name in outputs[part]["nodes"]
    }
    if not isinstance(lan, str) or lan == str(stack.network.lan) or recorded & {n.name for n in stack.nodes}:
        return
    raise CommandError(
        f"--previous {path}: these are the outputs of another deployment: its LAN is {lan} and this stack's network.lan "
        f"{stack.network.lan}, and none of its machines ({', '.join(sorted(recorded)) or 'none recorded'}) is in this stack's "
        "inventory; give this stack's own outputs (`pulumi stack output --json --stack <this stack>`)"
    )


def _readable(path: Path, outputs: dict[str, Any]) -> None:
    """Refuse outputs the day-2 plan cannot read (stacks.day2.unreadable), as `pulumi preview` refuses them."""
    from stacks.day2 import unreadable

    why = unreadable(outputs)
    if why is not None:
        raise CommandError(f"--previous {path}: {why}")


def _command_name() -> str:
    """How to run this command again, as the user can type it: `iluvatar` when it is on PATH, else its path."""
    arg0 = Path(sys.argv[0])
    if arg0.name != "iluvatar":
        return "python -m iluvatar"
    found = shutil.which("iluvatar")
    if found is not None and Path(found).resolve() == arg0.resolve():
        return "iluvatar"
    # As typed (.venv/bin/iluvatar) when under the current folder, without resolving a link; else its whole path.
    rel = os.path.relpath(os.path.abspath(arg0))
    return os.path.abspath(arg0) if rel.startswith("..") else rel


def _prompt(question: str, default: str | None) -> str:
    """One question at the terminal; Enter takes the default, and a question with none is asked again."""
    while True:
        try:
            answer = input(f"{question}{f' [{default}]' if default else ''}: ").strip()
        except EOFError:
            raise CommandError(f"init: the input ended at {question!r}; give the rest as flags (iluvatar init --help)") from None
        if answer or default is not None:
            return answer or default or ""
        print("  an answer is needed here")


def _init(args: argparse.Namespace) -> int:
    from iluvatar import init

    interactive = sys.stdin.isatty() and not args.yes
    stack = args.stack
    if stack is None:
        if not interactive:
            raise CommandError("init: which stack? give its name (e.g. iluvatar init mylab): the file is Pulumi.<name>.yaml")
        stack = _prompt("stack name (the file is Pulumi.<name>.yaml)", "homelab")
    out = Path(args.out) if args.out is not None else Path(f"Pulumi.{stack}.yaml")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to replace it, or pick another stack name")
    try:
        answers = init.Answers(
            stack=stack,
            machines=tuple(init.parse_machine(m) for m in args.machine or ()),
            **{name: getattr(args, name) for name in init.FLAGS},
        )
        if interactive:
            answers = init.ask_missing(answers, _prompt, print)
        text, sf = init.build(answers, out)
    except init.FlagError as e:
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    _write_file(out, text.encode())
    stack_config = sf.parse()
    schema_note = _write_schema_beside(init.schema_beside(out), init.SCHEMA.read_bytes())
    unset = sf.unset_secrets()
    from iluvatar.summary import nodes

    print(f"wrote {out}: {nodes(stack_config).removeprefix('nodes: ').replace(' (', ' machines (', 1)} on {stack_config.network.lan}")
    if stack_config.ainur is not None and answers.dhcp_mode is None:
        print(
            f"DHCP mode: {init.DEFAULT_MODE}, as no --dhcp-mode was given: it never fights your router, which keeps the LAN's DHCP "
            "(--dhcp-mode dhcp makes the Ainur the LAN's DHCP server, once the router's is off)"
        )
    me = _command_name()
    name = stack if out.resolve() == (Path.cwd() / f"Pulumi.{stack}.yaml").resolve() else str(out)
    render = f"{me} render {name} --out render/{stack}"
    steps = [] if unset else [f"{me} validate {name}"]
    steps.append(f"{render}, then read render/{stack}/plan.txt")
    if not (out.resolve().parent / PROJECT_FILE).is_file():
        # The schema's copy goes along, so the header of the copy resolves there too (the clone's .gitignore keeps it out of Git).
        beside = f" {out.with_name(init.SCHEMA_BESIDE)}" if init.schema_beside(out) is not None else ""
        steps.append(f"cp {out}{beside} {shown(ROOT)}/ and run the pulumi commands there: pulumi reads a stack file beside Pulumi.yaml")
    steps.append(f"pulumi stack init {stack}")
    steps += [secret.command for secret in unset]
    if unset:
        steps.append(f"{me} validate {name}")
    steps.append("pulumi preview")
    if stack_config.ainur is not None:
        steps.append(router_step(stack_config))
    if schema_note:
        print(schema_note)
    print("next:")
    for step in steps:
        print(f"  {step}")
    return EXIT_OK


def _write_schema_beside(beside: Path | None, schema: bytes) -> str:
    """The editor schema beside a stack file written outside the checkout (its header names it there), kept with it
    wherever the folder goes; a file of that name that is not this project's schema is left alone, and said."""
    if beside is None:
        return ""
    if beside.exists():
        try:
            ours = json.loads(beside.read_bytes()).get("title") == json.loads(schema)["title"]
        except (ValueError, AttributeError):
            ours = False
        if not ours:
            return f"left {beside} as it is (not this project's stack schema): the stack file's header names it, so editors check against it"
        if beside.read_bytes() == schema:
            return ""
    _write_file(beside, schema)
    return f"wrote {beside}: the editor schema the stack file names; keep the two together (`iluvatar schema --out {beside}` refreshes it)"


def router_step(stack: StackConfig) -> str:
    """What the router needs before the first `pulumi up`, in the stack's DHCP mode (docs/layers/netboot.md#dhcp-modes)."""
    assert stack.ainur is not None
    pool = f"{stack.network.dhcp_range.start}-{stack.network.dhcp_range.end}"
    if stack.ainur.netboot.mode == "dhcp" and stack.ainur.netboot.router_pool != "none":
        # The router lent until now: `up` asks its DHCP off right before the netboot pod starts (netboot-router-off), so
        # the household has a lender for the whole first `up` but the pod's start.
        return (
            f"on your router: leave its DHCP server on; `pulumi up` says when to turn it off (the step netboot-router-off, "
            f"right before the Ainur start lending {pool} and each machine its address), and waits for it"
        )
    if stack.ainur.netboot.mode == "dhcp":
        return (
            f"before `pulumi up`, on your router: turn its DHCP server off (the Ainur lend {pool} and each machine its address; "
            "with the router's on too, the LAN has two DHCP servers and the Ainur's, authoritative, refuse the router's leases)"
        )
    return (
        f"before `pulumi up`, on your router: keep its DHCP on, its pool {pool}, and add each machine's MAC and IP as a "
        f"static lease; and have it hand out {stack.ainur.service_ip} as the DNS server, or the internal zone's names "
        "(sign-in, the CA page, internal apps) do not resolve on the LAN (the Ainur answer PXE beside it: "
        "docs/layers/netboot.md#dhcp-modes)"
    )


def _diagram(args: argparse.Namespace) -> int:
    from iluvatar.diagram import FORMATS, DiagramError, render_diagram
    from stacks.load import read_stack_file, validate_stack_file

    path = _resolve(args)
    out = Path(args.out)
    fmt = out.suffix.removeprefix(".")
    if fmt not in FORMATS:
        raise CommandError(f"{out}: the picture must end in {' or '.join('.' + f for f in FORMATS)}")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to replace it")
    sf = read_stack_file(path)
    try:
        image = render_diagram(validate_stack_file(sf), fmt)
    except DiagramError as e:
        raise CommandError(str(e)) from None
    _write_file(out, image)
    print(f"drew stack {sf.stack} to {out}")
    return EXIT_OK


def _write_file(out: Path, content: bytes) -> None:
    """Write beside `out` and rename over it: a failure leaves the old file whole."""
    parent = out.resolve().parent
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.", delete=False) as tmp:
            tmp.write(content)
        Path(tmp.name).chmod(_mode(0o666))
        Path(tmp.name).replace(out)
    except OSError as e:
        raise CommandError(f"cannot write {out}: {e.strerror or e}") from None


def _schema(args: argparse.Namespace) -> int:
    from stacks.schema import schema_text

    text = schema_text().encode()
    out = Path(args.out)
    if args.check:
        current = out.read_bytes() if out.is_file() else None
        if current != text:
            raise CommandError(f"{out} is {'missing' if current is None else 'stale'}; regenerate it with `iluvatar schema --out {out}`")
        print(f"{out} is current")
        return EXIT_OK
    _write_file(out, text)
    print(f"wrote the stack file schema to {out}")
    return EXIT_OK


def _reference(args: argparse.Namespace) -> int:
    from iluvatar.reference import REGENERATE, ReferenceError, reference

    out = Path(args.out)
    try:
        current = out.read_text(encoding="utf-8")
    except OSError as e:
        raise CommandError(f"{out}: {e.strerror or e}: the page's prose and markers are kept there") from None
    try:
        text = reference(current)
    except ReferenceError as e:
        raise CommandError(str(e)) from None
    if args.check:
        if text != current:
            raise CommandError(f"{out} is stale; regenerate it with `{REGENERATE.replace('docs/reference/stack.md', str(out))}`")
        print(f"{out} is current")
        return EXIT_OK
    _write_file(out, text.encode())
    print(f"wrote the stack reference's tables to {out}")
    return EXIT_OK


def _scaffold(args: argparse.Namespace) -> int:
    from iluvatar import scaffold
    from stacks.load import load_stack_file

    path = _resolve(args)
    stack = load_stack_file(path)
    if stack.gitops is None:
        raise CommandError(f"{path}: the stack has no iluvatar:gitops; set its repoUrl first")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandError(f"{out} exists and is not a folder")
    try:
        written, kept = scaffold.write(out, scaffold.files(stack))
    except OSError as e:
        raise CommandError(f"cannot write {out}: {e.strerror or e}") from None
    files = f"{len(written)} file{'' if len(written) == 1 else 's'}"
    print(f"scaffolded the GitOps repository of {path} in {out}: {files} written, {len(kept)} kept as they were")
    return EXIT_OK


STACK_HELP = "a stack name (homelab: Pulumi.homelab.yaml, looked up as below) or a stack file path"
STACK_EPILOG = """\
STACK, for the commands that take one: a stack file path (anything ending in .yaml or holding a /), or a
stack name, homelab for Pulumi.homelab.yaml, looked up in the current folder first, then in the project
folder (the nearest folder at or above it holding a Pulumi.yaml, as pulumi finds it) and, outside any
project, in this checkout; --project DIR looks in DIR alone. docs/cli.md has every command.
"""


def version() -> str:
    """`iluvatar --version`: the installed package, the releases a new stack starts from, the range the rules take."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from stacks import releases
    from stacks.rules import TALOS_KUBERNETES

    try:
        package = installed("iluvatar")
    except PackageNotFoundError:  # a checkout run as `python -m iluvatar` without `uv sync`
        package = "(not installed)"
    takes = ", ".join(f"{t[0]}.{t[1]} (Kubernetes 1.{low} to 1.{high})" for t, (low, high) in sorted(TALOS_KUBERNETES.items()))
    return (
        f"iluvatar {package}\n"
        f"new stacks start from Talos {releases.TALOS}, Kubernetes {releases.KUBERNETES}, k3s {releases.K3S}\n"
        f"validation takes Talos {takes} (docs/reference/stack.md#versions)"
    )


class _Version(argparse.Action):
    """argparse's own `version` action reflows the text into one paragraph; these lines are printed as they are."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        print(version())
        parser.exit()


INIT_HELP = "write a new stack file from your LAN, machines and the layers you want (asks at a terminal what the flags leave out)"
INIT_EPILOG = """\
Each value left out is asked for at a terminal (Enter takes the default shown) and derived otherwise: the gateway
is the LAN's first address, DNS the gateway, the DHCP range and load-balancer pool the LAN's .100-.199 and
.220-.239 (the same shares of a smaller LAN), each VIP and machine address the next free static one from .10.
A machine with role valar or maiar is a Pi of the Ainur, which then run DNS and netboot for the LAN, and
its DHCP with --dhcp-mode dhcp (proxy, the default, leaves DHCP to the router; asked at a terminal).

example:
  iluvatar init mylab --lan 192.168.1.0/24 \\
    --machine name=pi-1,mac=d8:3a:dd:10:00:01,role=valar,board=rpi5 \\
    --machine name=node-1,mac=a8:b8:e0:20:00:01,role=valinor,board=generic-x86 \\
    --ssh-key ~/.ssh/id_ed25519.pub
"""


def _init_parser(sub: Any) -> None:
    c = sub.add_parser("init", help=INIT_HELP, description=INIT_HELP, epilog=INIT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("stack", nargs="?", metavar="STACK", help="the new stack's name: writes Pulumi.STACK.yaml in the current folder")
    c.add_argument("--out", metavar="FILE", help="write the stack file here instead (e.g. ../lab/Pulumi.STACK.yaml)")
    c.add_argument("--force", action="store_true", help="replace an existing stack file")
    c.add_argument("--yes", "-y", action="store_true", help="ask nothing: take every default, leave every layer not given off")
    lan = c.add_argument_group("the LAN")
    lan.add_argument("--lan", metavar="CIDR", help="the LAN the machines are on, e.g. 192.168.1.0/24 (required)")
    lan.add_argument("--gateway", metavar="IP", help="its router (default: the LAN's first address)")
    lan.add_argument("--dns", metavar="IP[,IP]", help="the DNS servers the LAN forwards to (default: the gateway)")
    lan.add_argument("--domain", metavar="NAME", help=f"the LAN's internal zone (default: {DEFAULT_DOMAIN})")
    lan.add_argument("--dhcp-range", metavar="START-END", help="the addresses DHCP hands out (default: derived from the LAN)")
    lan.add_argument("--lb-pool", metavar="START-END", help="the addresses Cilium gives Services (default: derived from the LAN)")
    lan.add_argument(
        "--dhcp-mode",
        metavar="proxy|dhcp",
        help="with the Ainur: proxy (the default), your router keeps the LAN's DHCP and the Ainur answer only PXE; dhcp, the Ainur "
        "are the LAN's DHCP server, once the router's DHCP is off",
    )
    lan.add_argument(
        "--router-pool",
        metavar="START-END|none",
        help="with --dhcp-mode dhcp (required): the pool your router's DHCP lent, whose leases the household still holds; "
        "none if no DHCP server ever lent on this LAN, or the router's has been off longer than its lease time",
    )
    machines = c.add_argument_group("the machines")
    machines.add_argument(
        "--machine",
        action="append",
        metavar="name=..,mac=..,role=..,board=..",
        help="one machine (repeat the flag for each): role valar, maiar (a Pi of the Ainur), valinor (a control plane) or istari "
        "(a worker); board rpi4, rpi5, rk1, generic-x86 or generic-arm64; optionally ip=, disk= (where Talos or Ubuntu installs) "
        "and data=/dev/a+/dev/b (data disks)",
    )
    machines.add_argument("--ssh-key", metavar="KEY|FILE", help="the SSH public key the Pis let in, or its .pub file (with the Ainur)")
    layers = c.add_argument_group("the layers (each off unless given)")
    layers.add_argument("--gitops", metavar="URL", help="the Git repository Argo CD deploys your apps from")
    layers.add_argument(
        "--monitoring", metavar="RECEIVER", help="Prometheus and Grafana, alerts to ntfy=URL, webhook=URL or email=TO,from=..,smarthost=.."
    )
    layers.add_argument("--identity", metavar="CONNECTOR", help="one sign-in (Dex on the Ainur): github=ORG,client-id=ID[,team=SLUG] or static=EMAIL")
    layers.add_argument("--backup", metavar="URL", help="etcd snapshots and app backups to nfs://SERVER/EXPORT or s3://HOST/BUCKET")
    layers.add_argument(
        "--cloudflare", metavar="ACCOUNT_ID", help="publish apps through a Cloudflare tunnel (with --external-domain and --acme-email)"
    )
    layers.add_argument("--external-domain", metavar="NAME", help="the public zone Cloudflare serves, e.g. example.com")
    layers.add_argument("--acme-email", metavar="EMAIL", help="Let's Encrypt's account e-mail for the public certificate")
    c.set_defaults(run=_init)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="iluvatar",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=STACK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action=_Version, help="print the version and the releases a new stack starts from, then exit")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _init_parser(sub)  # first: a newcomer's first command
    commands: list[tuple[str, Callable[[argparse.Namespace], int], str]] = [
        ("validate", _validate, "check a stack with the same rules as `pulumi preview`"),
        ("render", _render, "write everything the stack would create, as files, offline"),
        ("diagram", _diagram, "draw the homelab topology with Graphviz (.svg or .png)"),
        ("scaffold", _scaffold, "write the GitOps repository layout the stack's ApplicationSets read (adds files, never replaces one)"),
        ("versions", _versions, "what the stack runs, the newest each part supports, and the path there (Talos one minor at a time)"),
    ]
    outputs = {
        "render": ("output folder (must be empty or absent)", "replace a non-empty output folder"),
        "diagram": ("picture file, .svg or .png", "replace an existing picture"),
    }
    for name, run, help_ in commands:
        c = sub.add_parser(name, help=help_, description=help_, epilog=STACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        c.add_argument("stack", nargs="?", metavar="STACK", help=STACK_HELP)
        # The older spelling, kept so existing scripts run; STACK is the one way to write it.
        c.add_argument("--stack", dest="stack_option", metavar="NAME", help=argparse.SUPPRESS)
        c.add_argument("--project", metavar="DIR", help="look the stack name up in this folder alone (default: here, then the project folder)")
        if name in outputs:
            out_help, force_help = outputs[name]
            c.add_argument("--out", required=True, help=out_help)
            c.add_argument("--force", action="store_true", help=force_help)
        if name == "render":
            c.add_argument(
                "--previous",
                metavar="OUTPUTS.json",
                help="render as a change against a deployment whose outputs this file holds (`pulumi stack output --json`, or a render's outputs.json): writes its day-2 plan to rollout.txt",
            )
            c.add_argument(
                "--on",
                metavar="YYYY-MM-DD",
                type=_day,
                help="with --previous: the day `pulumi up` will run (default: now), which decides whether the Talos provider renews the talosconfig's client certificate then",
            )
        if name == "scaffold":
            c.add_argument("--out", required=True, metavar="DIR", help="the GitOps repository's folder (created if absent)")
        if name == "versions":
            c.add_argument(
                "--previous", metavar="OUTPUTS.json", help="the last deployment's outputs (`pulumi stack output --json`): the path from what runs"
            )
        c.set_defaults(run=run)
    # Listed for --help only: main() hands `upgrader ...` to the Go program before argparse sees it.
    sub.add_parser("upgrader", add_help=False, help="run the upgrader that pulumi up runs for Talos steps (upgrader/README.md)")
    s = sub.add_parser("schema", help="write the JSON Schema of the stack files' iluvatar: keys (for editors)")
    s.add_argument("--out", required=True, help="the schema file, e.g. schema/stack.schema.json")
    s.add_argument("--check", action="store_true", help="do not write: exit 2 unless the file is already current")
    s.set_defaults(run=_schema)
    r = sub.add_parser("reference", help="write the stack reference's generated tables (docs/reference/stack.md) from the model")
    r.add_argument("--out", required=True, help="the page, e.g. docs/reference/stack.md: its sections between markers are rewritten")
    r.add_argument("--check", action="store_true", help="do not write: exit 2 unless the page is already current")
    r.set_defaults(run=_reference)
    from iluvatar import power  # `iluvatar power ...`: the power-on steps pulumi up runs (plans.power)

    power.add_parser(sub)
    _discover_parser(sub)
    _recover_parser(sub)
    _doctor_parser(sub)
    return p


DOCTOR_HELP = "list what ends within 90 days of a deployment (certificates, CAs, the kubeconfigs), and what to do"


def _doctor_parser(sub: Any) -> None:
    c = sub.add_parser("doctor", help=DOCTOR_HELP, description=DOCTOR_HELP, epilog=STACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("stack", nargs="?", metavar="STACK", help=STACK_HELP)
    c.add_argument("--stack", dest="stack_option", metavar="NAME", help=argparse.SUPPRESS)
    c.add_argument("--project", metavar="DIR", help="look the stack name up in this folder alone")
    c.add_argument(
        "--outputs",
        required=True,
        metavar="FILE",
        help="the deployment's outputs: `pulumi stack output --json --show-secrets > FILE` (the secrets hold the kubeconfigs' ends)",
    )
    c.add_argument("--on", metavar="YYYY-MM-DD", type=_day, help="the day to judge from (default: today)")
    c.set_defaults(run=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from iluvatar import doctor
    from stacks.load import load_stack_file

    path = _resolve(args)
    stack = load_stack_file(path)
    outputs_file = Path(args.outputs)
    outputs = _outputs_json("--outputs", outputs_file, "`pulumi stack output --json --show-secrets`")
    if not isinstance(outputs, dict):
        raise CommandError(
            f"--outputs {outputs_file}: not the outputs of a stack (a JSON object), as `pulumi stack output --json --show-secrets` writes them"
        )
    on = args.on or datetime.datetime.now(datetime.UTC)
    text, code = doctor.report(path.name.removeprefix("Pulumi.").removesuffix(".yaml"), stack, outputs, on)
    sys.stdout.write(text)
    return code


DISCOVER_HELP = "list the machines waiting in maintenance mode (arda.discovery) as ready inventory entries; --write adds them"


def _discover_parser(sub: Any) -> None:
    c = sub.add_parser(
        "discover", help=DISCOVER_HELP, description=DISCOVER_HELP, epilog=STACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    c.add_argument("stack", nargs="?", metavar="STACK", help=STACK_HELP)
    c.add_argument("--stack", dest="stack_option", metavar="NAME", help=argparse.SUPPRESS)
    c.add_argument("--project", metavar="DIR", help="look the stack name up in this folder alone")
    c.add_argument("--write", action="store_true", help="add the entries to the stack file (validated before and after; comments and order kept)")
    c.add_argument("--kubeconfig", metavar="FILE", help="the Ainur's kubeconfig (default: $KUBECONFIG, then ~/.kube/config)")
    c.add_argument("--context", metavar="NAME", help="the kubeconfig's context to use (default: its current one)")
    c.add_argument("--address", action="append", metavar="IP[:PORT]", help="also ask the machine at this address (repeatable)")
    c.add_argument("--no-leases", action="store_true", help="ask only the --address machines (in proxy mode the Ainur hold no leases)")
    c.add_argument("--role", default="istari", help="the new machines' role: istari (default) or valinor")
    c.add_argument("--arch", choices=["amd64", "arm64"], help="the architecture of an --address machine that does not say")
    c.add_argument("--deadline", type=float, default=10.0, metavar="SECONDS", help="how long each machine and the API server have to answer")
    c.add_argument(
        "--wipe",
        action="append",
        default=[],
        metavar="MAC",
        help="let this machine's install disk be one that holds another system or data (Talos wipes it)",
    )
    window = c.add_mutually_exclusive_group()
    window.add_argument(
        "--arm", metavar="DURATION", help="open the discovery window (30m, 2h: at most 12h): unknown machines that PXE-boot until then are discovered"
    )
    window.add_argument("--disarm", action="store_true", help="close the discovery window now")
    c.set_defaults(run=_discover)


def _discover(args: argparse.Namespace) -> int:
    from iluvatar import discover

    try:
        discover.run(args, _resolve(args))
    except discover.DiscoverError as e:
        raise CommandError(str(e)) from None
    return EXIT_OK


RECOVER_HELP = "after a killed `pulumi up`: remove Helm's record of each release it left a pending create of, so the next `pulumi up` adopts it"
RECOVER_EPILOG = """\
STACK is the Pulumi stack (rk1), whose state `pulumi stack export --show-secrets` prints (run here, its output
read, never written to disk), or its stack file (Pulumi.rk1.yaml: its folder is the project). With --state FILE,
the state is read from FILE instead. The provider's client certificate and key go to the TLS library in memory,
never to a file. Run it on the host (and in the container) the stack's lock names: the killed run's
pulumi-resource-kubernetes, which may still be installing, shows only there. With --release NAMESPACE/NAME
--provider PROVIDER (both from render/STACK/plan.txt), it clears the one release a killed run that kept no
checkpoint installed, on that provider's cluster. docs/bring-up.md#when-a-pulumi-up-stops-half-way says when to run it.
"""


def _recover_parser(sub: Any) -> None:
    c = sub.add_parser(
        "recover", help=RECOVER_HELP, description=RECOVER_HELP, epilog=RECOVER_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    c.add_argument("stack", metavar="STACK", help="the Pulumi stack (rk1), or its stack file (Pulumi.rk1.yaml)")
    c.add_argument(
        "--state",
        metavar="FILE",
        help="read the state from FILE (`pulumi stack export --show-secrets > FILE`; - for standard input) instead of running that",
    )
    c.add_argument("--dry-run", action="store_true", help="say what it would wait for and remove, and change nothing")
    c.add_argument(
        "--release",
        metavar="NAMESPACE/NAME",
        help="a release a killed run that kept no checkpoint installed (no pending create names it): its `[helm release: ...]` in render/STACK/plan.txt",
    )
    c.add_argument(
        "--provider", metavar="NAME", help="with --release: the release's kubernetes provider, its `[provider: ...]` in render/STACK/plan.txt"
    )
    c.set_defaults(run=_recover)


def _recover(args: argparse.Namespace) -> int:
    from iluvatar import recover

    try:
        return recover.run(args)
    except recover.RecoverError as e:
        raise CommandError(str(e)) from None


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["upgrader"]:
        # Every argument after `upgrader` is the upgrader's, untouched; it runs under this process, which ends as it ends.
        from iluvatar import upgrader

        upgrader.exec_(given[1:])
    args = parser().parse_args(given)
    try:
        code: int = args.run(args)
    except (CommandError, StackFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except StackConfigError as e:
        print(e.report(), file=sys.stderr)
        return EXIT_INVALID
    return code


def run() -> NoReturn:
    """The `iluvatar` command as a process (the console script, `python -m iluvatar`): `main()`, then exit at once.

    Two costs are not the command's work, and each took about a second of `iluvatar render homelab`
    (scripts/benchmark.py measures it): the cyclic garbage collector walking the provider SDKs' millions of
    freshly imported objects again and again while they load (mypy raises its thresholds the same way, for
    the same reason), and the interpreter's teardown freeing them one by one after the files are written.
    """
    gc.set_threshold(*GC_THRESHOLDS)
    # Output piped to `head` ends the command quietly, as other Unix tools end, not with a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code = main()
    # Every file was written and renamed into place by the command; only the standard streams may hold output.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os._exit(code)
