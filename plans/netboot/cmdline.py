"""Kernel arguments merged as Talos's imager merges a schematic's extra kernel arguments into its defaults.

A netbooted machine boots Image Factory's bare kernel, which carries none of its schematic's arguments
(image-factory v1.0.3 internal/profile/profile.go:457), so the iPXE script adds the board's
`arda.kernelArgs` to the kernel line itself (plans.netboot.ipxe). The installed system gets them from its
installer, whose command line Talos's imager builds: the defaults, then the schematic's extra arguments
through go-procfs's Cmdline.AppendAll with WithOverwriteArgs("console"), WithOverwriteArgs("talos.platform")
and WithDeleteNegatedArgs() (talos v1.12.4 pkg/imager/imager.go:413-418). So the netboot line merges them
the same way, and a machine gets the same arguments whichever way it boots: `console=...` replaces the
default console, `-key` removes a default (`-key=value` only that value), and any other argument is added,
next to the values its key already has.

This is a port of go-procfs v0.1.2 procfs/cmdline.go (the version Talos v1.12.4 pins): parse (:327-340)
groups every value under its key, in the order keys first appear; Set (:165-178) replaces a key's values
where it stands; Append (:225-238) adds a value to a key; Delete (:189-208) and DeleteAll (:211-222);
AppendAll (:264-308); String (:91-105) prints `key` for an empty value, else `key=value`. The tests hold it
equal to go-procfs itself (tools/kernel-cmdline).
"""

from __future__ import annotations

from collections.abc import Sequence

# The imager's WithOverwriteArgs (imager.go:415-416): "console" and constants.KernelParamPlatform.
OVERWRITE = ("console", "talos.platform")

Parameters = list[tuple[str, list[str]]]


def _insert(params: Parameters, key: str, value: str) -> None:
    for k, values in params:
        if k == key:
            values.append(value)
            return
    params.append((key, [value]))


def parse(line: str) -> Parameters:
    """Every argument of a command line, its values grouped under its key (`key` alone: the value "")."""
    params: Parameters = []
    for arg in line.removesuffix("\n").split():
        key, eq, value = arg.partition("=")
        _insert(params, key, value if eq else "")
    return params


def to_string(params: Parameters) -> str:
    return " ".join(k if v == "" else f"{k}={v}" for k, values in params for v in values)


def append_all(params: Parameters, args: Sequence[str], overwrite: Sequence[str] = OVERWRITE, delete_negated: bool = True) -> Parameters:
    """`params` with `args` merged in, as Cmdline.AppendAll does with the imager's options."""
    out: Parameters = [(k, list(v)) for k, v in params]
    for key, values in parse(" ".join(args)):
        if delete_negated and len(key) > 1 and key[0] == "-":
            name = key[1:]
            if values[0] == "":
                out = _delete_all(out, name)
            else:
                for k, existing in out:
                    if k == name:
                        existing[:] = [v for v in existing if v not in values]
                        break
            continue
        if key in overwrite:
            for i, (k, _) in enumerate(out):
                if k == key:
                    out[i] = (key, list(values))
                    break
            else:
                out.append((key, list(values)))
            continue
        for value in values:
            _insert(out, key, value)
    return out


def _delete_all(params: Parameters, key: str) -> Parameters:
    """DeleteAll: the first parameter of that key goes (parse keeps one per key)."""
    for i, (k, _) in enumerate(params):
        if k == key:
            return params[:i] + params[i + 1 :]
    return params


def merge(defaults: str, extra: Sequence[str]) -> str:
    """The command line the imager makes of `defaults` and a schematic's extra kernel arguments."""
    return to_string(append_all(parse(defaults), extra))
