"""The program's seam with its providers: every resource input and invoke argument, against the provider SDK's own input types.

A provider reads what it is sent under its own (camelCase) names. The Python SDKs translate a resource's keyword
arguments and an input type (`...Args`) into them, but a plain dict, or a provider's output object handed back as an
input, goes out as it is, under its Python names (`client_certificate`). The mocks and a preview take anything; the
real provider refused it ("Must set a configuration value", shared engine facts, 2026-11-25). A simulation records
what the SDK produced (`iluvatar.simulate`: each RegisterResourceRequest's inputs, each invoke's arguments), so
checking it checks what the engine receives. Every key is checked against what the installed SDK declares:

- a resource type → its SDK class, through the package's resource-module registrations (each SDK's
  `_utilities.register` at import, what the SDK itself uses to rebuild a resource from its type); a Kubernetes type
  no module registers is a `CustomResource` (`kubernetes:<apiVersion>:<kind>`, apiextensions/CustomResource.py):
  its metadata typed, its spec free-form;
- an invoke token → the generated function that sends it (found by its file name, checked to invoke that token);
- the keys a class accepts: the `@pulumi.getter(name=...)` names of its properties, nested through their type hints
  (an input type, its `TypedDict` twin, a list or map of either); an invoke's: its `__args__['camelName']` keys,
  nested through its parameters' annotations;
- required: an input type's `__init__` parameter without a default; an invoke's parameter whose `<fn>_output`
  annotation holds one `Optional` (the generator wraps every argument in one, and an optional one in a second:
  pulumi pkg/codegen/python/gen.go at v3.259.0, genFunDef lines 2231-2242 and typeString lines 2758-2780).

`Any` and `Mapping[str, Any]` (Helm values, a custom resource's spec) are free-form: the descent stops there.

    python -m tools.provider_inputs Pulumi.homelab.yaml [...]    # one line per problem; exit 1 if any
"""

from __future__ import annotations

import ast
import collections.abc
import difflib
import enum
import functools
import importlib
import inspect
import re
import sys
import types
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import rpc

from iluvatar.simulate import SecretValue, Simulation

# The provider SDKs the program uses, by the package name their type tokens start with. pulumi_cloudflare is
# imported only here: components/cloudflare.py registers its resources by type without it (1.2 s).
SDKS = {
    "kubernetes": "pulumi_kubernetes",
    "command": "pulumi_command",
    "talos": "pulumiverse_talos",
    "random": "pulumi_random",
    "tls": "pulumi_tls",
    "cloudflare": "pulumi_cloudflare",
    "tailscale": "pulumi_tailscale",
}
# Invokes the engine answers itself (pulumi pkg/resource/deploy/builtins.go, v3.259.0): no provider SDK declares them.
BUILTIN_PACKAGE = "pulumi"
PROVIDERS = "pulumi:providers:"
# The name the Python SDK gives a property it maps to a Pulumi name (pulumi/_types.py, `getter`).
_PULUMI_NAME = "_pulumi_name"
# The Kubernetes SDK names a CRD schema's `x-kubernetes-*` fields with underscores (JSONSchemaPropsArgs); the provider
# takes either and writes the dashed name Kubernetes reads (pulumi-kubernetes v4.32.0 provider/pkg/provider/provider.go
# underscoreToDashMap lines 3032-3041, applied to every key by propMapToUnstructured lines 3067-3069).
_DASHED = re.compile(r"x_kubernetes_[a-z_]+")


@dataclass(frozen=True)
class Problem:
    """One key the provider would not read as the program meant it: where (resource or invoke, and path) and why."""

    subject: str  # `<type> <name>` for a resource, the token for an invoke
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject} {self.path}: {self.message}" if self.path else f"{self.subject}: {self.message}"


class SdkError(Exception):
    """The installed SDKs do not say what a type or token takes (a type no SDK registers, a convention that changed)."""


# --- What a value may be --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Free:
    """Anything (Any, Mapping[str, Any] on its own): the provider takes it as it is."""


@dataclass(frozen=True)
class Scalar:
    """A string, number, boolean, enum or asset: no keys below it."""


@dataclass(frozen=True)
class ListOf:
    item: Shape


@dataclass(frozen=True)
class MapOf:
    """A map with keys of the program's choosing (labels, a CRD schema's properties), each value a `value`."""

    value: Shape


@dataclass(frozen=True)
class Obj:
    """An input (or output) type: the keys its class declares."""

    cls: type


@dataclass(frozen=True)
class OneOf:
    options: tuple[Shape, ...]


Shape = Free | Scalar | ListOf | MapOf | Obj | OneOf
FREE, SCALAR = Free(), Scalar()
# None, as a union member: nothing to check (pulumi.Input[Optional[T]] also holds an Output[None]).
NOTHING = OneOf(())


@dataclass(frozen=True)
class Keys:
    """The keys a class or function accepts: each one's shape, the Python names they replace, the required ones."""

    name: str
    fields: Mapping[str, Shape]
    python: Mapping[str, str] = field(default_factory=dict)  # Python name -> the provider's
    required: frozenset[str] = frozenset()
    # A custom resource takes any other top-level key as it is (its spec, a Secret-like `data`).
    open: bool = False


def _module_names(cls: type) -> dict[str, Any]:
    """The namespace a class's string annotations are written in: its modules' (as pulumi/_types.py `_globals_for_cls`)."""
    names: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        module = sys.modules.get(base.__module__)
        if module is not None:
            names.update(vars(module))
    return names


def _hints(function: Any, names: Mapping[str, Any]) -> dict[str, Any]:
    # `T` is the type variable of pulumi.Input/InputType; its value does not matter for what is unwrapped here.
    return typing.get_type_hints(function, globalns=dict(names), localns={"Output": pulumi.Output, "T": type(None)})


def _twin(typed_dict: type) -> type:
    """The input type a `...ArgsDict` TypedDict stands for: its keys are Python names, the wire's those of `...Args`."""
    twin = getattr(sys.modules[typed_dict.__module__], typed_dict.__name__.removesuffix("Dict"), None)
    if not isinstance(twin, type) or not _getters(twin):
        raise SdkError(f"{typed_dict.__module__}.{typed_dict.__name__}: no input type of the same name without `Dict`")
    return twin


def shape(hint: Any) -> Shape:
    """What a type hint of an SDK allows, with Input/Output/Awaitable/Optional unwrapped."""
    if hint is Any or hint is object:
        return FREE
    if hint is type(None):
        return NOTHING
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return _union([shape(a) for a in args])
    if origin is typing.Literal:
        return SCALAR
    if origin in (collections.abc.Awaitable, pulumi.Output) or hint is pulumi.Output:
        return shape(args[0]) if args else FREE
    if origin in (list, collections.abc.Sequence, tuple):
        return ListOf(shape(args[0]) if args else FREE)
    if origin in (dict, collections.abc.Mapping):
        return MapOf(shape(args[1]) if len(args) == 2 else FREE)
    if isinstance(hint, typing.ForwardRef | str):
        raise SdkError(f"unresolved type {hint!r}")
    if isinstance(hint, type):
        if typing.is_typeddict(hint):
            return Obj(_twin(hint))
        if _getters(hint):  # an input type (or an output type a union also accepts)
            return Obj(hint)
        if issubclass(hint, str | int | float | bool | bytes | enum.Enum | pulumi.Asset | pulumi.Archive):
            return SCALAR
    return SCALAR


def _union(options: Iterable[Shape]) -> Shape:
    flat: list[Shape] = []
    for option in options:
        for each in option.options if isinstance(option, OneOf) else (option,):
            if each not in flat:
                flat.append(each)
    if any(isinstance(o, Obj) for o in flat):
        # pulumi.InputType[T] is Union[T, Mapping[str, Any]]: the mapping is T written as a dict, not free-form.
        flat = [o for o in flat if o != MapOf(FREE)]
    if FREE in flat:
        return FREE
    return SCALAR if not flat else flat[0] if len(flat) == 1 else OneOf(tuple(flat))


def _getters(cls: type) -> dict[str, tuple[str, Any]]:
    """Python name -> (the provider's name, the getter) of each property the Python SDK maps (`@pulumi.getter`)."""
    found: dict[str, tuple[str, Any]] = {}
    for base in reversed(cls.__mro__):
        for name, value in vars(base).items():
            if isinstance(value, property) and hasattr(value.fget, _PULUMI_NAME):
                found[name] = (getattr(value.fget, _PULUMI_NAME), value.fget)
    return found


@functools.cache
def keys_of(cls: type) -> Keys:
    """The keys an input type accepts (its getters' names), each one's shape, and the required ones (no default in `__init__`)."""
    names = _module_names(cls)
    fields: dict[str, Shape] = {}
    python: dict[str, str] = {}
    for attr, (pulumi_name, getter) in _getters(cls).items():
        fields[pulumi_name] = shape(_hints(getter, names).get("return", Any))
        python[attr] = pulumi_name
        if cls.__module__.startswith(SDKS["kubernetes"] + ".") and _DASHED.fullmatch(pulumi_name):
            fields[pulumi_name.replace("_", "-")] = fields[pulumi_name]
    parameters = inspect.signature(vars(cls).get("__init__", object.__init__)).parameters.values()
    required = frozenset(python[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name in python)
    return Keys(cls.__name__, fields, python, required)


# --- Type tokens and invoke tokens to what the SDK declares ---------------------------------------------------------


@functools.cache
def _sdk(package: str) -> types.ModuleType:
    if package not in SDKS:
        raise SdkError(f"no installed SDK for package {package!r} (known: {', '.join(sorted(SDKS))})")
    return importlib.import_module(SDKS[package])


def resource_class(type_: str) -> type | None:
    """The SDK class registered for a resource type, by the SDK's own registrations; None when none is."""
    package, module, name = type_.split(":", 2)
    if type_.startswith(PROVIDERS):
        _sdk(name)
        provider = rpc.get_resource_package(name, "")
        info = getattr(provider, "pkg_info", None)
        return getattr(importlib.import_module(info["fqn"]), info["class"]) if info and info.get("token") == type_ else None
    _sdk(package)
    registered = rpc.get_resource_module(package, module, "")
    info = getattr(registered, "mod_info", None)
    if not info or type_ not in info.get("classes", {}):
        return None
    found: type = getattr(importlib.import_module(info["fqn"]), info["classes"][type_])
    return found


def _args_class(cls: type) -> type:
    """The class a resource class fills with what it sends (`__props__ = <Args>.__new__(<Args>)` in `_internal_init`):
    `<Name>Args`, or `<Name>InitArgs` where an input type already has that name (most Kubernetes kinds)."""
    internal = getattr(cls, "_internal_init", None)
    if internal is None:
        raise SdkError(f"{cls.__module__}.{cls.__name__}: no _internal_init (the generated shape changed)")
    source = inspect.getsource(internal)
    named = re.search(r"__props__ = (\w+)\.__new__\(\1\)", source)
    found = getattr(sys.modules[cls.__module__], named.group(1), None) if named else None
    if not isinstance(found, type):
        raise SdkError(
            f"{cls.__module__}.{cls.__name__}: its _internal_init fills no `__props__ = <Args>.__new__(<Args>)` (the generated shape changed)"
        )
    return found


@functools.cache
def _custom_resource() -> Keys:
    """A Kubernetes custom resource (pulumi_kubernetes apiextensions/CustomResource.py): `apiVersion` and `kind`
    required, `metadata` an ObjectMeta; any other key (its spec, a `data`) goes to the cluster as written."""
    from pulumi_kubernetes.apiextensions import CustomResource

    keys = keys_of(_args_class(CustomResource))
    return Keys("CustomResource", keys.fields, keys.python, keys.required, open=True)


@functools.cache
def resource_keys(type_: str) -> Keys:
    """What a resource of this type accepts as inputs."""
    cls = resource_class(type_)
    if cls is None:
        if type_.startswith("kubernetes:") and type_.count(":") == 2:
            return _custom_resource()
        raise SdkError(f"no class of the installed {SDKS.get(type_.split(':')[0], 'SDKs')} registers type {type_}")
    return keys_of(_args_class(cls))


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _package_dir(package: str) -> Path:
    return Path(inspect.getfile(_sdk(package))).parent


def _module_of(path: Path, package: str) -> types.ModuleType:
    root = _package_dir(package)
    dotted = ".".join((SDKS[package], *path.relative_to(root).with_suffix("").parts))
    return importlib.import_module(dotted)


def _invoked(node: ast.AST, token: str) -> bool:
    """Whether a function's body invokes `token` (pulumi.runtime.invoke / invoke_output / invoke_async / call)."""
    return any(
        isinstance(n, ast.Call) and n.args and isinstance(n.args[0], ast.Constant) and n.args[0].value == token and _callee(n).startswith("invoke")
        for n in ast.walk(node)
    )


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _optionals(annotation: ast.expr | None) -> int:
    """How many `Optional[...]` wrap an annotation's type, through `pulumi.Input[...]`."""
    count = 0
    while isinstance(annotation, ast.Subscript):
        head = ast.unparse(annotation.value)
        if head in ("Optional", "typing.Optional"):
            count += 1
        elif head not in ("pulumi.Input", "Input"):
            break
        annotation = annotation.slice
    return count


@functools.cache
def invoke_keys(token: str) -> Keys:
    """What an invoke accepts: its generated function's `__args__` keys, their shapes, and the required ones."""
    package, _, name = token.split(":", 2)
    root = _package_dir(package)
    file_name = f"{_snake(name)}.py"
    candidates = sorted(p for p in root.rglob(file_name) if "__pycache__" not in p.parts)
    for path in candidates:
        tree = ast.parse(path.read_text())
        functions = [f for f in tree.body if isinstance(f, ast.FunctionDef) and _invoked(f, token)]
        if functions:
            return _function_keys(token, _module_of(path, package), functions)
    raise SdkError(f"no function of the installed {SDKS[package]} invokes {token} (looked for {file_name} under {root.name}/)")


def _function_keys(token: str, module: types.ModuleType, functions: list[ast.FunctionDef]) -> Keys:
    # The output form keeps which arguments are required (one Optional, not two); the plain form loses it.
    output = next((f for f in functions if f.name.endswith("_output")), None)
    chosen = output or functions[0]
    camel: dict[str, str] = {}
    for node in ast.walk(chosen):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(target := node.targets[0], ast.Subscript)
            and ast.unparse(target.value) == "__args__"
            and isinstance(target.slice, ast.Constant)
            and isinstance(node.value, ast.Name)
        ):
            camel[node.value.id] = str(target.slice.value)
    if not camel and chosen.args.kwonlyargs + chosen.args.args:
        raise SdkError(f"{module.__name__}.{chosen.name}: no `__args__['name'] = argument` lines (the generated shape changed)")
    hints = _hints(getattr(module, chosen.name), vars(module))
    fields = {camel[p]: shape(hints.get(p, Any)) for p in camel}
    annotations = {a.arg: a.annotation for a in chosen.args.args + chosen.args.kwonlyargs}
    required = frozenset(camel[p] for p in camel if output is not None and _optionals(annotations.get(p)) == 1)
    return Keys(f"{module.__name__}.{chosen.name}", fields, camel, required)


# --- Checking ------------------------------------------------------------------------------------------------------


def _join(path: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z_$][\w$-]*", key) else f"[{key!r}]"
    return f"{path}{shown}" if shown.startswith("[") else f"{path}.{shown}" if path else shown


def check_value(value: Any, expected: Shape | Keys, subject: str, path: str = "") -> list[Problem]:
    """The problems of one value against what the SDK declares for it (a shape, or a class's keys)."""
    if isinstance(value, SecretValue):
        value = value.value
    if value == rpc.UNKNOWN:
        return []
    if isinstance(expected, Keys):
        return _check_keys(value, expected, subject, path) if isinstance(value, dict) else []
    match expected:
        case ListOf(item) if isinstance(value, list):
            return [p for i, v in enumerate(value) for p in check_value(v, item, subject, f"{path}[{i}]")]
        case MapOf(item) if isinstance(value, dict) and item != FREE:
            return [p for k, v in sorted(value.items()) for p in check_value(v, item, subject, _join(path, str(k)))]
        case Obj(cls) if isinstance(value, dict):
            return _check_keys(value, keys_of(cls), subject, path)
        case OneOf(options):
            return _best(value, options, subject, path)
    return []


def _best(value: Any, options: tuple[Shape, ...], subject: str, path: str) -> list[Problem]:
    """A value against a union: fine when one member takes it; else the problems of the member it comes closest to."""
    fitting = [o for o in options if isinstance(o, Obj | MapOf if isinstance(value, dict) else ListOf if isinstance(value, list) else Scalar)]
    results = [check_value(value, o, subject, path) for o in fitting]
    if not results or any(not r for r in results):
        return []
    return min(results, key=len)


def _check_keys(value: Mapping[str, Any], keys: Keys, subject: str, path: str) -> list[Problem]:
    found: list[Problem] = []
    # In key order: the engine's maps (protobuf Structs) keep none, and the problems of a run read the same every time.
    for key, item in sorted(value.items()):
        if key in keys.fields:
            found += check_value(item, keys.fields[key], subject, _join(path, key))
        elif not keys.open:
            found.append(Problem(subject, _join(path, key), f"not a key of {keys.name}; {_suggestion(key, keys)}"))
    found += [Problem(subject, _join(path, key), f"missing: {keys.name} requires it") for key in sorted(keys.required - value.keys())]
    return found


def _suggestion(key: str, keys: Keys) -> str:
    if key in keys.python:
        return f"did you mean {keys.python[key]} (the provider's name for the Python name {key})"
    close = difflib.get_close_matches(key, list(keys.fields), n=1)
    return f"did you mean {close[0]}" if close else f"its keys: {', '.join(sorted(keys.fields))}"


def _owned_by_an_sdk(type_: str) -> bool:
    return type_.startswith(PROVIDERS) or type_.split(":", 1)[0] in SDKS


def registration_problems(type_: str, name: str, inputs: Mapping[str, Any]) -> list[Problem]:
    """One resource's inputs against its SDK class's arguments."""
    subject = f"{type_} {name}"
    try:
        keys = resource_keys(type_)
    except SdkError as e:
        return [Problem(subject, "", str(e))]
    found = check_value(dict(inputs), keys, subject)
    if keys.open and f"kubernetes:{inputs.get('apiVersion')}:{inputs.get('kind')}" != type_:
        found.append(
            Problem(
                subject,
                "",
                f"registered as a custom resource, but its apiVersion/kind say kubernetes:{inputs.get('apiVersion')}:{inputs.get('kind')}",
            )
        )
    return found


def invoke_problems(token: str, args: Mapping[str, Any]) -> list[Problem]:
    """One invoke's arguments against its SDK function's."""
    if token.split(":", 1)[0] == BUILTIN_PACKAGE:
        return []
    try:
        keys = invoke_keys(token)
    except SdkError as e:
        return [Problem(token, "", str(e))]
    return check_value(dict(args), keys, token)


def problems(sim: Simulation) -> list[Problem]:
    """Every key of every resource input and invoke argument of a run that the provider would not read as meant."""
    found: list[Problem] = []
    for reg in sim.registrations:
        if _owned_by_an_sdk(reg.type):
            found += registration_problems(reg.type, reg.name, reg.inputs)
        elif reg.custom:
            found.append(Problem(f"{reg.type} {reg.name}", "", "a custom resource of a package no installed SDK provides"))
    # Invokes resolve in no fixed order, and each machine's config invoke has the same keys: once each, in order.
    found += sorted({p for token, args in sim.invocations for p in invoke_problems(token, args)}, key=str)
    return found


# --- What the Kubernetes SDK has the provider do ------------------------------------------------------------------


def _sources(package: str) -> Iterator[tuple[Path, str]]:
    root = _package_dir(package)
    for path in sorted(root.rglob("*.py")):
        yield path, path.read_text()


@functools.cache
def remote_components(package: str) -> tuple[str, ...]:
    """The types an SDK has its provider construct (`super().__init__(<type>, ..., remote=True)`): a multi-language
    component the provider expands itself, each registered in the SDK's resource modules."""
    found = []
    for path, text in _sources(package):
        if "remote=True" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if (
                isinstance(node, ast.Call)
                and any(k.arg == "remote" and isinstance(k.value, ast.Constant) and k.value.value is True for k in node.keywords)
                and node.args
                and isinstance(node.args[0], ast.Constant | ast.JoinedStr)
            ):
                token = node.args[0].value if isinstance(node.args[0], ast.Constant) else None
                if not isinstance(token, str) or resource_class(token) is None:
                    raise SdkError(f"{path.name}: constructs {ast.unparse(node.args[0])} remotely, a type the SDK does not register")
                found.append(token)
    return tuple(sorted(set(found)))


@functools.cache
def sdk_invokes(package: str) -> dict[str, tuple[str, ...]]:
    """Each token an SDK's own code invokes (not a generated data source: the SDK-side components' helpers), with the
    files that invoke it, relative to the package."""
    found: dict[str, set[str]] = {}
    root = _package_dir(package)
    for path, text in _sources(package):
        for token in re.findall(r"invoke(?:_async|_output)?\(\s*['\"]([^'\"]+)['\"]", text):
            found.setdefault(token, set()).add(path.relative_to(root).as_posix())
    return {token: tuple(sorted(files)) for token, files in sorted(found.items())}


def main(argv: list[str]) -> int:
    from iluvatar.simulate import simulate
    from stacks import read_stack_file

    if not argv:
        print(__doc__)
        return 2
    count = 0
    for name in argv:
        for problem in problems(simulate(read_stack_file(Path(name)))):
            print(f"{name}: {problem}")
            count += 1
    return 1 if count else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
