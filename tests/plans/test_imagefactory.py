"""Image Factory schematic IDs in pure Python (plans.imagefactory), against pinned vectors.

Every ID and body below is what image-factory v1.1.0 pkg/schematic Schematic.ID gives (and what its client
POSTs) for the text, as tools/talos-check/schematic-id answers it: tests/tools/test_schematic_id.py checks the
same pins against that Go code, so these need no Go.
"""

from __future__ import annotations

import unicodedata

import pytest

from plans.imagefactory import SchematicError, decode, format_float, posted, schematic_id

# The vanilla schematic (no customization): engine facts, a real `pulumi up` against a stand-in Image Factory
# running image-factory v1.1.0's ID function. An empty text is what the provider sends when none is set.
VANILLA = "376567988ad370138ad8b2698212367b8edcb69b5fd68c80be1f2ec7d603b4ba"

# Each board's schematic as plans.talos writes it (storage extensions, and the SBC overlay): image-factory
# v1.1.0 pkg/schematic Schematic.ID. rk1's is the one Image Factory issued in issue #38 (85f68390...).
BOARD_IDS = {
    "rpi4": "f8a903f101ce10f686476024898734bb6b36353cc4d41f348514db9004ec0a9d",
    "rpi5": "b00ac8400b2ad823d3d5e972136dd89c0d960d58e0ff2b12d5b8b87e9d53e670",
    "rk1": "85f683902139269fbc5a7f64ea94a694d31e0b3d94347a225223fcbd042083ae",
    "generic-x86": "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245",
    "generic-arm64": "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245",
}
# What the program's rk1 text hashed to before: no schematic Image Factory knows.
TEXT_HASH_RK1 = "92fdceddd77fd3e39f632871cf6f3eeafff8103374c37096dfe20db7696f5444"

# One vector per field of the Schematic struct (image-factory v1.1.0 pkg/schematic/schematic.go:19-67):
# the program's text, the body the provider POSTs, and image-factory v1.1.0 pkg/schematic Schematic.ID.
VECTORS: dict[str, tuple[str, str, str]] = {
    "extraKernelArgs": (
        "customization:\n  extraKernelArgs:\n  - console=ttyS2,1500000\n  - net.ifnames=0\n  - talos.dashboard.disabled=1\n",
        "customization:\n    extraKernelArgs:\n        - console=ttyS2,1500000\n        - net.ifnames=0\n        - talos.dashboard.disabled=1\n",
        "1ce9d2132f86fa2242500c44c2c54df0efc84682c3b9b8a3500bfbaaa350ede6",
    ),
    "meta": (
        "customization:\n  meta:\n  - key: 0x0a\n    value: '{\"externalIPs\": [\"192.168.0.9\"]}'\n  - key: 12\n    value: ''\n",
        'customization:\n    meta:\n        - key: 10\n          value: \'{"externalIPs": ["192.168.0.9"]}\'\n        - key: 12\n          value: ""\n',
        "343bc89e3cc0e4e67e59b9bd33da7257c19fea6d4e285674266430cc1a0c1ac5",
    ),
    "systemExtensions": (
        "customization:\n  systemExtensions:\n    officialExtensions:\n    - siderolabs/iscsi-tools\n    - siderolabs/util-linux-tools\n",
        "customization:\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n            - siderolabs/util-linux-tools\n",
        "613e1592b2da41ae5e265e8789429f22e121aab91cb4deb6bc3c0b6262961245",
    ),
    "bootloader": (
        "customization:\n  bootloader: SD-Boot\n",
        "customization:\n    bootloader: sd-boot\n",
        "9ed5fecdacb36b5c5427b87d409f1065cfb2df69b0f71c58b868d9d466d8dab3",
    ),
    "secureboot": (
        "customization:\n  secureboot:\n    includeWellKnownCertificates: yes\n",
        "customization:\n    secureboot:\n        includeWellKnownCertificates: true\n",
        "fa8e05f142a851d3ee568eb0a8e5841eaf6b0ebc8df9a63df16ac5ed2c04f3e6",
    ),
    "overlay": (
        "overlay:\n  image: siderolabs/sbc-raspberrypi\n  name: rpi_generic\n  options:\n"
        "    configTxtAppend: |\n      dtoverlay=vc4-kms-v3d\n      enable_uart=1\n"
        "    boot: {delay: 1.0, timeout: 1000000.0, verbose: true, serial: ~, since: 2001-12-14}\n"
        "    '1': ['true', 0x1F, -0, yes]\n",
        "overlay:\n    image: siderolabs/sbc-raspberrypi\n    name: rpi_generic\n    options:\n"
        '        "1":\n            - "true"\n            - 31\n            - -0\n            - "yes"\n'
        "        boot:\n            delay: 1\n            serial: null\n            since: 2001-12-14T00:00:00Z\n            timeout: 1e+06\n            verbose: true\n"
        "        configTxtAppend: |\n            dtoverlay=vc4-kms-v3d\n            enable_uart=1\n"
        "customization: {}\n",
        "2f39654cc73c055b38ab4362477687c053a33334063076c00ea4e7a7f6e5eb29",
    ),
    # A board's schematic as plans.talos writes it with arda.kernelArgs: a negated default, a URL, a `#` that needs quotes.
    "boardKernelArgs": (
        "customization:\n  extraKernelArgs:\n  - console=ttyS2,1500000\n  - -talos.halt_if_installed\n  - talos.logging.kernel=udp://192.168.0.5:5140/\n  - '#x'\n  systemExtensions:\n    officialExtensions:\n    - siderolabs/iscsi-tools\n    - siderolabs/util-linux-tools\noverlay:\n  image: siderolabs/sbc-rockchip\n  name: turingrk1\n",
        "overlay:\n    image: siderolabs/sbc-rockchip\n    name: turingrk1\ncustomization:\n    extraKernelArgs:\n        - console=ttyS2,1500000\n        - -talos.halt_if_installed\n        - talos.logging.kernel=udp://192.168.0.5:5140/\n        - '#x'\n    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n            - siderolabs/util-linux-tools\n",
        "6f1690743435ee05662ae92b878dcf4d9d8ba2babd13b96302cd67b908398e8b",
    ),
    "everything": (
        "unknown: dropped by the provider\ncustomization:\n  secureboot: {includeWellKnownCertificates: true}\n  bootloader: grub\n"
        "  systemExtensions: {officialExtensions: [siderolabs/iscsi-tools]}\n  meta: [{value: x, key: 255}]\n  extraKernelArgs: [quiet]\n"
        "overlay: {options: {b: 2, a: 1, a10: 3, a9: 4}, name: turingrk1, image: siderolabs/sbc-rockchip}\n",
        "overlay:\n    image: siderolabs/sbc-rockchip\n    name: turingrk1\n    options:\n        a: 1\n        a9: 4\n        a10: 3\n        b: 2\n"
        "customization:\n    extraKernelArgs:\n        - quiet\n    meta:\n        - key: 255\n          value: x\n"
        "    systemExtensions:\n        officialExtensions:\n            - siderolabs/iscsi-tools\n    bootloader: grub\n"
        "    secureboot:\n        includeWellKnownCertificates: true\n",
        "93b949a4ff918b440d674958798d3c1ef144d3d89ee9aef09832667ce4c08c94",
    ),
}


def test_the_vanilla_schematic() -> None:
    assert posted("") == posted("customization: {}\n") == posted("customization:\n") == "customization: {}\n"
    assert schematic_id("") == schematic_id("{}") == schematic_id("# nothing\n") == VANILLA


@pytest.mark.parametrize("field", sorted(VECTORS))
def test_each_field_is_marshaled_as_image_factory_does(field: str) -> None:
    text, body, id_ = VECTORS[field]
    assert posted(text) == body
    assert schematic_id(text) == id_
    assert schematic_id(body) == id_  # the canonical text is its own canonical form


def test_the_id_is_not_a_hash_of_the_text() -> None:
    two_spaces = VECTORS["systemExtensions"][0]
    assert schematic_id(two_spaces) == schematic_id(VECTORS["systemExtensions"][1]) == BOARD_IDS["generic-x86"]
    assert schematic_id("# a comment\n" + two_spaces) == BOARD_IDS["generic-x86"]


def test_go_float_formatting() -> None:
    """strconv.FormatFloat(f, 'g', -1, 64): the exponent form from 1e+06 and below 1e-04."""
    cases = [(0.0, "0"), (-0.0, "-0"), (1.0, "1"), (0.5, "0.5"), (100.0, "100"), (123456.0, "123456"), (1e6, "1e+06"), (1234567.0, "1.234567e+06")]
    cases += [(0.0001, "0.0001"), (0.00001, "1e-05"), (1.5e300, "1.5e+300"), (5e-324, "5e-324"), (-2.5, "-2.5"), (float("inf"), ".inf")]
    cases += [(float("-inf"), "-.inf"), (float("nan"), ".nan")]
    assert [(f, format_float(f)) for f, _ in cases] == cases


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("0x1F", "31"),
        ("0o17", "15"),
        ("017", "15"),  # strconv.ParseInt base 0: a leading 0 is octal
        ("08", "8"),  # not octal, so a float: 8
        ("1_000", "1000"),
        ("1e3", "1000"),
        ("-0", "-0"),
        (".5", "0.5"),
        ("1e400", "1e400"),  # out of float64's range: a string, and plain as one
        ("18446744073709551615", "18446744073709551615"),  # a uint64
        ("18446744073709551616", "1.8446744073709552e+19"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14T21:59:43.1-05:00"),
        ("2001-12-14 21:59:43.1234567891", "2001-12-14T21:59:43.123456789Z"),
        ("2001-02-29", "2001-02-29"),  # no such day: a string
        ("yes", '"yes"'),  # YAML 1.1's booleans are strings, quoted on the way out
        ("'true'", '"true"'),
        ("'a: b'", "'a: b'"),  # plain is not possible: the emitter's single quotes
        ("'it''s: x'", "'it''s: x'"),
        ('"tab\\there"', '"tab\\there"'),
        ('"\\ufeffbom"', '"\\uFEFF\\x62\\x6F\\x6D"'),  # isBOM looks at the value's start for every character
        ('"it\'s\\u2028x"', "'it''s\u2028            x'"),  # a line separator is a break, and allowed in single quotes
        ('"emoji \\U0001F600"', '"emoji \\U0001F600"'),
        ('"a\\nb\\n"', "|\n            a\n            b"),
        ('"a\\nb"', "|-\n            a\n            b"),
        ('"a\\n\\n"', "|+\n            a\n"),
        ('" lead\\nx"', "|4-\n             lead\n            x"),
        ('"trail \\nx"', '"trail \\nx"'),
        ('"\\n \\n"', '"\\n \\n"'),
        ("!!binary aGVsbG8=", "hello"),
        ("!!binary //79", "!!binary //79"),
        ("!!float 1", "1"),
        ("!foo bar", "bar"),
    ],
)
def test_option_values_decode_and_marshal_as_go_yaml_does(value: str, canonical: str) -> None:
    text = f"overlay:\n  options:\n    k: {value}\n"
    body = posted(text)
    assert body.startswith('overlay:\n    image: ""\n    name: ""\n    options:\n        k: ') and body.endswith("\ncustomization: {}\n")
    assert body.removeprefix('overlay:\n    image: ""\n    name: ""\n    options:\n        k: ').removesuffix("\ncustomization: {}\n") == canonical


def test_map_keys_in_go_yamls_order() -> None:
    """keyList.Less: numbers by value before strings, and strings by their digits' values."""
    text = "overlay:\n  options:\n    m: {b: 1, a10: 2, a9: 3, A: 4, 2: 5, 1.5: 6, true: 7, ~: 8, a09: 9}\n"
    order = [line.strip().split(":")[0] for line in posted(text).splitlines()[5:-1]]
    assert order == ["true", "1.5", "2", "null", "A", "a9", "a09", "a10", "b"]


def test_a_long_or_multiline_key_is_a_complex_key() -> None:
    long = "k" * 129
    assert f"        ? {long}\n        : v\n" in posted(f"overlay:\n  options:\n    {long}: v\n")
    assert posted(f"overlay:\n  options:\n    {long[:-1]}: v\n").count("?") == 0  # 128 bytes is still simple
    assert "        ? |-\n            a\n            b\n        : v\n" in posted('overlay:\n  options:\n    "a\\nb": v\n')


def test_the_provider_drops_unknown_fields_and_the_factory_would_not() -> None:
    assert decode("customization:\n  extensions: [x]\n", known_fields=False) == decode("", known_fields=False)
    with pytest.raises(SchematicError, match=r"field extensions not found in type schematic\.Customization"):
        decode("customization:\n  extensions: [x]\n", known_fields=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customization:\n  bootloader: uefi\n", "uefi does not belong to BootloaderKind values"),
        ("customization:\n  bootloader: [grub]\n", r"cannot construct !!seq into BootloaderKind \(TextUnmarshaler\)"),
        ("customization:\n  meta:\n  - key: 256\n    value: x\n", "cannot construct !!int `256` into uint8"),
        ("customization:\n  meta:\n  - key: '1'\n    value: x\n", "cannot construct !!str `1` into uint8"),
        ("customization:\n  secureboot:\n    includeWellKnownCertificates: 'true'\n", "cannot construct !!str `true` into bool"),
        ("customization:\n  extraKernelArgs: quiet\n", r"cannot construct !!str `quiet` into \[\]string"),
        ("overlay: rk1\n", "cannot construct !!str `rk1` into Overlay"),
        ("- customization\n", "cannot construct !!seq `` into Schematic"),
        ("customization: {}\ncustomization: {}\n", "mapping key 'customization' already defined"),
        ("overlay:\n  options:\n    a: &x {b: 1}\n    <<: *x\n", r"merge keys \(<<\) are not followed"),
        ("overlay:\n  options:\n    m: {2001-12-14: a, 2001-12-15: b}\n", "two timestamps, or NaN and another number"),
        ("overlay:\n  options:\n    m: {.nan: a, 1: b}\n", "two timestamps, or NaN and another number"),
        ("overlay:\n  options:\n    m: {1: a, 1.0: b}\n", "mapping key '1' already defined"),  # both marshal as `1`: the factory's decode refuses
        ("overlay:\n  options:\n    b: !!binary aGVsbG8\n", "invalid base64"),
        ("overlay:\n  options:\n    i: !!int 1.5\n", r"cannot construct !!float `1.5` as a !!int"),
        ("customization: [\n", "not YAML"),
    ],
)
def test_refused_schematics(text: str, message: str) -> None:
    """What the provider's decode or the factory's refuses fails here too, with go-yaml's words."""
    with pytest.raises(SchematicError, match=message):
        schematic_id(text)


def test_a_character_go_and_python_may_class_differently_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """CJK Extension H (Unicode 15.0, Go 1.26's tables) is unassigned in Python 3.11's: its order is not guessed."""
    monkeypatch.setattr(unicodedata, "unidata_version", "14.0.0")
    with pytest.raises(SchematicError, match=r"U\+31350: Go's Unicode 15.0.0 orders it"):
        schematic_id("overlay:\n  options:\n    m: {\U00031350: 1, a: 2}\n")
    assert schematic_id("overlay:\n  options:\n    m: {é: 1, a: 2}\n")  # assigned alike since Unicode 3.2
