"""python -m tools.upstream: fetch, pin and mirror upstream modules; print prepared charts and schemas."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from tools import gotools
from tools.upstream import __doc__ as overview
from tools.upstream.charts import chart
from tools.upstream.crds import crd_schema_dir
from tools.upstream.modules import UpstreamError, mirror, module_dir, pin, pins


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    try:
        yield
    except (UpstreamError, gotools.GoToolError) as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None


def main(argv: list[str]) -> int:
    with _reported():
        match argv:
            case ["fetch"]:
                for module, version in sorted(pins()):
                    print(f"{module}@{version}: {module_dir(module, version)}", flush=True)
            case ["pin", spec] if "@" in spec:
                module, version = spec.rsplit("@", 1)
                print(f"{module} {version} {pin(module, version)}")
            case ["mirror", target]:
                for name in mirror(Path(target)):
                    print(name)
            case ["chart", name, version]:
                print(chart(name, version))
            case ["crds", source, version]:
                print(crd_schema_dir(source, version))
            case _:
                print(overview, file=sys.stderr)
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
