"""The `python -m iluvatar` commands: offline checks of a stack, no Pulumi CLI or network.

Exit codes: 0 success; 1 the stack config is invalid (every problem listed, one a line);
2 the command could not run (missing file, not YAML, bad arguments).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence

from stacks.errors import StackConfigError
from stacks.load import StackFileError, load_stack_file

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _validate(args: argparse.Namespace) -> int:
    try:
        stack = load_stack_file(args.stack_file)
    except StackFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except StackConfigError as e:
        print(e.report(), file=sys.stderr)
        return EXIT_INVALID
    roles = Counter(n.role for n in stack.nodes)
    ainur = f"Ainur {roles['valar']} valar + {roles['maiar']} maiar" if stack.ainur else "no Ainur"
    print(
        f"{args.stack_file}: valid: {len(stack.nodes)} nodes ({ainur}; "
        f"Arda {roles['valinor']} valinor + {roles['istari']} istari) on {stack.network.lan}"
    )
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m iluvatar", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("validate", help="check a stack file with the same rules as `pulumi preview`")
    v.add_argument("stack_file", metavar="STACK_FILE", help="e.g. Pulumi.homelab.yaml")
    v.set_defaults(run=_validate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code: int = args.run(args)
    return code
