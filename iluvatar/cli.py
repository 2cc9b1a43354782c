"""The `iluvatar` command (also `python -m iluvatar`): offline checks of a stack, no Pulumi CLI or network.

Every command takes the stack the same way: a stack name (`homelab`), found as
`Pulumi.<name>.yaml` in the project folder, or the path of a stack file (`Pulumi.homelab.yaml`,
`../lab/Pulumi.test.yaml`). The project folder is `--project`, else the nearest folder at or above
the current one holding a `Pulumi.yaml` (as `pulumi` finds it), else this checkout.

Exit codes: 0 success; 1 the stack config is invalid (every problem listed, one a line);
2 the command could not run (unknown stack, missing file, not YAML, bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from stacks.errors import StackConfigError
from stacks.load import StackFileError, load_stack_file, read_stack_file, validate_stack_file

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = "Pulumi.yaml"


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


def stack_file(name: str, project: Path | None = None) -> Path:
    """The stack file for a stack name or a stack file path (relative to the current folder)."""
    if is_path(name):
        return Path(name)
    folder = project if project is not None else find_project()
    path = folder / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in folder.glob("Pulumi.*.yaml"))) or "none"
        where = "here" if folder.resolve() == Path.cwd().resolve() else f"in {shown(folder)}"
        raise CommandError(f"no stack {name!r}: {shown(path)} does not exist (stacks {where}: {known})")
    return path


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
    path = _resolve(args)
    # As `pulumi preview` checks it: every secret the stack needs set, each as ciphertext its secrets manager opens.
    stack = load_stack_file(path, require_secrets=True)
    roles = Counter(n.role for n in stack.nodes)
    ainur = f"Ainur {roles['valar']} valar + {roles['maiar']} maiar" if stack.ainur else "no Ainur"
    print(f"{path}: valid: {len(stack.nodes)} nodes ({ainur}; Arda {roles['valinor']} valinor + {roles['istari']} istari) on {stack.network.lan}")
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    path = _resolve(args)
    out = Path(args.out)
    _check_output(out, args.force)
    sf = read_stack_file(path)
    validate_stack_file(sf)  # every problem, as validate reports them, before anything runs
    # A secret not set yet renders as the placeholder every secret renders as; `pulumi preview` needs it, so it is listed.
    unset = sf.unset_secrets()
    # Imported only now: the Pulumi SDK takes a second to load, and a mistake above needs none of it.
    from iluvatar.render import render_files, write_tree
    from iluvatar.simulate import simulate

    previous = _previous_outputs(Path(args.previous)) if args.previous is not None else None
    import pulumi

    try:
        files = render_files(simulate(sf, previous=previous), previous)
    except pulumi.RunError as e:
        # The program's own refusals against the previous deployment (a version change no machine could make).
        print(str(e), file=sys.stderr)
        return EXIT_INVALID
    write_atomically(out, lambda staging: write_tree(files, staging))
    print(f"rendered stack {sf.stack} to {out}: {len(files)} files")
    if unset:
        count = f"{len(unset)} secret{'s' if len(unset) != 1 else ''}"
        print(f"before `pulumi preview`, set the {count} this stack needs (rendered as [secret]; `iluvatar validate` says why each):")
        for secret in unset:
            print(f"  {secret.command}")
    if "rollout.txt" in files:
        print(files["rollout.txt"], end="")
    return EXIT_OK


def _previous_outputs(path: Path) -> dict[str, Any]:
    """A deployment's outputs as `pulumi stack output --json` (or a render's outputs.json) writes them."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CommandError(f"--previous {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise CommandError(f"--previous {path}: not JSON ({e.msg} at line {e.lineno}); write it with `pulumi stack output --json`") from None
    if not isinstance(doc, dict):
        raise CommandError(f"--previous {path}: not the outputs of a stack (a JSON object), as `pulumi stack output --json` writes them")
    return doc


def _diagram(args: argparse.Namespace) -> int:
    from iluvatar.diagram import FORMATS, DiagramError, render_diagram

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


def _scaffold(args: argparse.Namespace) -> int:
    from iluvatar import scaffold

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


STACK_HELP = "a stack name (homelab: reads Pulumi.homelab.yaml in the project folder) or a stack file path"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="iluvatar", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands: list[tuple[str, Callable[[argparse.Namespace], int], str]] = [
        ("validate", _validate, "check a stack with the same rules as `pulumi preview`"),
        ("render", _render, "write everything the stack would create, as files, offline"),
        ("diagram", _diagram, "draw the homelab topology with Graphviz (.svg or .png)"),
        ("scaffold", _scaffold, "write the GitOps repository layout the stack's ApplicationSets read (adds files, never replaces one)"),
    ]
    outputs = {
        "render": ("output folder (must be empty or absent)", "replace a non-empty output folder"),
        "diagram": ("picture file, .svg or .png", "replace an existing picture"),
    }
    for name, run, help_ in commands:
        c = sub.add_parser(name, help=help_, description=help_)
        c.add_argument("stack", nargs="?", metavar="STACK", help=STACK_HELP)
        # The older spelling, kept so existing scripts run; STACK is the one way to write it.
        c.add_argument("--stack", dest="stack_option", metavar="NAME", help=argparse.SUPPRESS)
        c.add_argument(
            "--project", metavar="DIR", help="folder holding the stack files (default: the nearest with a Pulumi.yaml, else this checkout)"
        )
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
        if name == "scaffold":
            c.add_argument("--out", required=True, metavar="DIR", help="the GitOps repository's folder (created if absent)")
        c.set_defaults(run=run)
    # Listed for --help only: main() hands `upgrader ...` to the Go program before argparse sees it.
    sub.add_parser("upgrader", add_help=False, help="run the upgrader that pulumi up runs for Talos steps (upgrader/README.md)")
    s = sub.add_parser("schema", help="write the JSON Schema of the stack files' iluvatar: keys (for editors)")
    s.add_argument("--out", required=True, help="the schema file, e.g. schema/stack.schema.json")
    s.add_argument("--check", action="store_true", help="do not write: exit 2 unless the file is already current")
    s.set_defaults(run=_schema)
    from iluvatar import power  # `iluvatar power ...`: the power-on steps pulumi up runs (plans.power)

    power.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["upgrader"]:
        # Every argument after `upgrader` is the upgrader's, untouched; the process becomes it.
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
