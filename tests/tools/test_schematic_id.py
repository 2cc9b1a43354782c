"""Schematic IDs: plans.imagefactory against Image Factory's own code (tools/talos-check/schematic-id).

The checker runs what a `pulumi up` runs: the Talos provider's decode (go.yaml.in/yaml/v4's Unmarshal),
image-factory's client POSTing the struct's Marshal, and the factory's schematic.Unmarshal and ID. For every
schematic the stacks make, for the pinned vectors, and for generated schematics, Python's body and ID are the
checker's, or both refuse.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plans import imagefactory, talos, yamltext
from stacks import load_stack_file
from stacks.boards import BOARDS
from tests.edit import HOMELAB, RK1
from tests.plans.test_imagefactory import BOARD_IDS, TEXT_HASH_RK1, VANILLA, VECTORS
from tests.sims import simulated
from tools import schematic_id
from tools.schematic_id import MODULES, Named

SCHEMATIC = "talos:imageFactory/schematic:Schematic"
# Kernel arguments as arda.kernelArgs takes them: a console with a comma, a negated default, a URL, a quoted `#`.
KERNEL_ARGS = ("console=ttyS2,1500000", "-talos.halt_if_installed", "talos.logging.kernel=udp://192.168.0.5:5140/", "#x", "net.ifnames=0")


def _python(text: str) -> Named:
    """plans.imagefactory's answer in the checker's shape (a refusal as an empty ID)."""
    try:
        return Named(*imagefactory.named(text))
    except imagefactory.SchematicError as e:
        return Named("", "", "python", str(e))


def _same(texts: list[str], unicode_refusals: bool = False) -> None:
    """Python's body and ID are the checker's, or both refuse. With unicode_refusals, a text Python refuses for a
    character Go's Unicode tables and Python's may class differently is left out, not compared."""
    answers = {t: _python(t) for t in texts}
    if unicode_refusals:
        texts = [t for t in texts if "Unicode" not in answers[t].error]
    for text, go in zip(texts, schematic_id.name(texts), strict=True):
        python = answers[text]
        if go.id:
            assert (python.body, python.id) == (go.body, go.id), text
        else:
            assert python.error and not python.id, (text, go, python)


def test_the_checker_is_image_factorys_code_and_can_refuse() -> None:
    vanilla, refused, factory = schematic_id.name(["", "customization:\n  bootloader: uefi\n", "overlay:\n  options:\n    m: {1: a, 1.0: b}\n"])
    assert vanilla == Named("customization: {}\n", VANILLA)
    assert (refused.stage, refused.error) == ("provider", "yaml: construct errors:\n  line 2: uefi does not belong to BootloaderKind values")
    # Both keys marshal as `1`: the provider sends a body the factory's own decode refuses.
    assert factory.stage == "factory" and 'mapping key "1" already defined' in factory.error
    assert factory.body == 'overlay:\n    image: ""\n    name: ""\n    options:\n        m:\n            1: a\n            1: b\ncustomization: {}\n'
    assert set(MODULES) == {"github.com/siderolabs/image-factory", "go.yaml.in/yaml/v4", "github.com/siderolabs/talos/pkg/machinery"}


def test_the_pinned_vectors_are_image_factorys() -> None:
    texts = [text for text, _, _ in VECTORS.values()] + [talos.schematic_yaml(BOARDS[b]) for b in BOARD_IDS]
    named = schematic_id.name(texts)
    assert [(n.body, n.id) for n in named[: len(VECTORS)]] == [(body, id_) for _, body, id_ in VECTORS.values()]
    assert {b: n.id for b, n in zip(BOARD_IDS, named[len(VECTORS) :], strict=True)} == BOARD_IDS
    assert TEXT_HASH_RK1 not in {n.id for n in named}


def test_every_schematic_a_board_can_have() -> None:
    """Each board's schematic as the program writes it, and with each part of it left out; with and without kernel
    arguments (arda.kernelArgs), whose ID must be the factory's too: its installer is what the machines upgrade to."""
    texts = []
    for board in BOARDS.values():
        for args in ((), KERNEL_ARGS):
            doc = talos.schematic(board, args)
            parts = [("customization", doc["customization"]), ("overlay", doc.get("overlay"))]
            for keep in itertools.product((True, False), repeat=len(parts)):
                texts.append(yamltext.dump({k: v for (k, v), kept in zip(parts, keep, strict=True) if kept and v is not None}))
    assert texts[0] == talos.schematic_yaml(BOARDS["rpi4"])
    assert texts[4] == talos.schematic_yaml(BOARDS["rpi4"], KERNEL_ARGS)
    assert "extraKernelArgs:\n  - console=ttyS2,1500000\n" in texts[4]
    _same(texts)


def test_both_shipped_stacks_name_their_images_by_image_factorys_ids() -> None:
    for path in (HOMELAB, RK1):
        sim = simulated(path)
        schematics = {r.name.removeprefix("arda-config-schematic-"): r.inputs["schematic"] for r in sim.by_type(SCHEMATIC)}
        ids = {board: n.id for board, n in zip(schematics, schematic_id.name(list(schematics.values())), strict=True)}
        assert all(ids.values()), ids
        installers = sim.outputs["ardaInstallerImages"]
        assert {board: re.findall(r"/metal-installer/([0-9a-f]{64}):", url) for board, url in installers.items()} == {b: [i] for b, i in ids.items()}
        boards = {n.name: n.board for n in load_stack_file(path).arda_nodes}
        for node, url in sim.outputs["ardaDiskImages"].items():
            assert url.startswith(f"https://factory.talos.dev/image/{ids[boards[node]]}/"), (node, url)
        for board, url in sim.outputs["ardaPxeUrls"].items():
            assert url.startswith(f"https://pxe.factory.talos.dev/pxe/{ids[board]}/"), (board, url)


# Schematics as a later plans.talos could write them (yamltext.dump of a dict): every field of the struct,
# overlay options of any YAML type PyYAML writes, and values the provider or the factory refuse.
_texts = st.text(max_size=10)
_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | _texts | st.dates() | st.datetimes() | st.binary(max_size=10)
_keys = st.text(max_size=6) | st.integers(-3, 300) | st.booleans() | st.floats(allow_nan=False) | st.none()
_options = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3), max_leaves=8)
_optional = st.fixed_dictionaries
SCHEMATICS = _optional(
    {},
    optional={
        "overlay": _optional(
            {}, optional={"image": _texts, "name": _texts, "options": st.dictionaries(st.text(max_size=8) | st.integers(0, 20), _options, max_size=4)}
        ),
        "customization": _optional(
            {},
            optional={
                "extraKernelArgs": st.lists(_texts | st.integers() | st.none(), max_size=3),
                "meta": st.lists(_optional({"key": st.integers(-1, 256), "value": _texts}), max_size=3),
                "systemExtensions": _optional({}, optional={"officialExtensions": st.lists(_texts, max_size=3)}),
                "bootloader": st.sampled_from(["none", "dual-boot", "sd-boot", "grub", "GRUB", "Sd-Boot", "uefi"]),
                "secureboot": _optional({}, optional={"includeWellKnownCertificates": st.booleans()}),
            },
        ),
    },
)
# Plain scalars the way a person writes them: numbers in every base, floats, timestamps, YAML 1.1 booleans.
_PLAIN = st.text(alphabet="0123456789+-._eExXoObB:TtZ ", min_size=1, max_size=14).filter(lambda s: s == s.strip() and s[0] not in "-:")
_TWO = st.integers(0, 99).map(str) | st.integers(0, 9).map(lambda i: f"0{i}")
_TIMESTAMPS = st.builds(
    lambda y, mo, d, sep, time, frac, zone: f"{y:04d}-{mo}-{d}" + ("" if sep is None else f"{sep}{time}{frac}{zone}"),
    st.integers(0, 9999),
    _TWO,
    _TWO,
    st.sampled_from([None, "T", "t", " ", "  "]),
    st.tuples(_TWO, _TWO, _TWO).map(":".join),
    st.sampled_from(["", ".1", ".123456789", ".1234567891234", ",5", ".", ".x"]),
    st.sampled_from(["", "Z", "+05:30", "-00:00", "+24:60", "+25:00", "+0530", "z"]),
)


def _written(s: str) -> list[str]:
    return [
        f"overlay:\n  options:\n    k: {s}\n    l: [{s}]\n    m: {{{s}: 1, a: 2}}\n",
        f"customization:\n  meta:\n  - key: {s}\n    value: {s}\n",
        f"customization:\n  extraKernelArgs:\n  - {s}\n  secureboot:\n    includeWellKnownCertificates: {s}\n",
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(SCHEMATICS, min_size=20, max_size=20), st.lists(_PLAIN | _TIMESTAMPS, min_size=10, max_size=10))
def test_generated_schematics_are_named_as_image_factory_names_them(docs: list[dict[str, Any]], scalars: list[str]) -> None:
    _same([yamltext.dump(d) for d in docs] + [t for s in scalars for t in _written(s)], unicode_refusals=True)
