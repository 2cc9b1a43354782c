"""The `python -m iluvatar` commands: offline checks of a stack, no Pulumi CLI or network.

Exit codes: 0 success; 1 the stack config is invalid (every problem listed, one a line);
2 the command could not run (missing file, not YAML, bad arguments).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from stacks.errors import StackConfigError
from stacks.load import StackFileError, load_stack_file, read_stack_file, validate_stack_file

ROOT = Path(__file__).resolve().parent.parent


class CommandError(Exception):
    """A one-line reason the command cannot run (exit 2), printed without a traceback."""


def stack_file(name: str, project: Path = ROOT) -> Path:
    path = project / f"Pulumi.{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in project.glob("Pulumi.*.yaml"))) or "none"
        raise CommandError(f"no stack {name!r}: {path.name} does not exist (stacks here: {known})")
    return path


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


def _validate(args: argparse.Namespace) -> int:
    stack = load_stack_file(args.stack_file)
    roles = Counter(n.role for n in stack.nodes)
    ainur = f"Ainur {roles['valar']} valar + {roles['maiar']} maiar" if stack.ainur else "no Ainur"
    print(
        f"{args.stack_file}: valid: {len(stack.nodes)} nodes ({ainur}; "
        f"Arda {roles['valinor']} valinor + {roles['istari']} istari) on {stack.network.lan}"
    )
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from iluvatar.render import render_files, write_tree
    from iluvatar.simulate import simulate

    path = stack_file(args.stack, Path(args.project))
    out = Path(args.out)
    _check_output(out, args.force)
    sf = read_stack_file(path)
    validate_stack_file(sf)  # every problem, as validate reports them, before anything runs
    files = render_files(simulate(sf))
    write_atomically(out, lambda staging: write_tree(files, staging))
    print(f"rendered stack {args.stack} to {out}: {len(files)} files")
    return EXIT_OK


def _diagram(args: argparse.Namespace) -> int:
    from iluvatar.diagram import FORMATS, DiagramError, render_diagram

    path = stack_file(args.stack, Path(args.project))
    out = Path(args.out)
    fmt = out.suffix.removeprefix(".")
    if fmt not in FORMATS:
        raise CommandError(f"{out}: the picture must end in {' or '.join('.' + f for f in FORMATS)}")
    if out.exists() and not args.force:
        raise CommandError(f"{out} exists; pass --force to replace it")
    try:
        image = render_diagram(load_stack_file(path), fmt)
    except DiagramError as e:
        raise CommandError(str(e)) from None
    parent = out.resolve().parent
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.", delete=False) as tmp:
            tmp.write(image)
        Path(tmp.name).chmod(_mode(0o666))
        Path(tmp.name).replace(out)
    except OSError as e:
        raise CommandError(f"cannot write {out}: {e.strerror or e}") from None
    print(f"drew stack {args.stack} to {out}")
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iluvatar", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("validate", help="check a stack file with the same rules as `pulumi preview`")
    v.add_argument("stack_file", metavar="STACK_FILE", help="e.g. Pulumi.homelab.yaml")
    v.set_defaults(run=_validate)
    for name, run, help_, out_help, force_help in (
        (
            "render",
            _render,
            "write everything the stack would create, as files, offline",
            "output folder (must be empty or absent)",
            "replace a non-empty output folder",
        ),
        ("diagram", _diagram, "draw the homelab topology with Graphviz (.svg or .png)", "picture file, .svg or .png", "replace an existing picture"),
    ):
        c = sub.add_parser(name, help=help_)
        c.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
        c.add_argument("--out", required=True, help=out_help)
        c.add_argument("--force", action="store_true", help=force_help)
        c.add_argument("--project", default=str(ROOT), help="folder holding the stack files (default: this project)")
        c.set_defaults(run=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (CommandError, StackFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except StackConfigError as e:
        print(e.report(), file=sys.stderr)
        return EXIT_INVALID
    return code
