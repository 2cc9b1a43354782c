"""YAML text for generated artifacts: what a reader of a patch or manifest meets, pinned exactly."""

from __future__ import annotations

import yaml

from plans import yamltext


def test_keys_keep_their_order_unless_sorted() -> None:
    doc = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "x"}}
    assert yamltext.dump(doc) == "kind: Pod\napiVersion: v1\nmetadata:\n  name: x\n"
    assert yamltext.dump(doc, sort_keys=True) == "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n"


def test_a_repeated_object_is_written_out_each_time_never_as_an_alias() -> None:
    shared = {"path": "/var/lib/longhorn"}
    text = yamltext.dump({"a": shared, "b": shared, "list": [shared, shared]})
    assert "&" not in text and "*" not in text
    assert text == ("a:\n  path: /var/lib/longhorn\nb:\n  path: /var/lib/longhorn\nlist:\n- path: /var/lib/longhorn\n- path: /var/lib/longhorn\n")


def test_block_style_unicode_and_no_wrapping_below_4096_columns() -> None:
    long = " ".join(["word"] * 800)  # 3,999 characters
    assert yamltext.dump({"servers": ["a", "b"], "name": "Eä", "line": long}) == f"servers:\n- a\n- b\nname: Eä\nline: {long}\n"


def test_lines_wrap_just_past_4096_columns() -> None:
    """libyaml breaks at the first space past the width: one-letter words show a width below 4096, two-letter ones above."""
    for word, first_line in (("w", 4098), ("ww", 4097)):
        text = " ".join([word] * (6000 // (len(word) + 1)))
        dumped = yamltext.dump({"k": text})
        assert len(dumped.splitlines()[0]) == first_line
        assert dumped == yaml.dump({"k": text}, Dumper=yaml.CSafeDumper, width=4096, default_flow_style=False)
        assert yamltext.dump_all([{"k": text}]) == dumped


def test_documents_are_separated_and_read_back() -> None:
    docs = [{"b": 1, "a": "ä"}, {"kind": "HostnameConfig", "hostname": "tirion"}]
    text = yamltext.dump_all(docs)
    assert text == "b: 1\na: ä\n---\nkind: HostnameConfig\nhostname: tirion\n"
    assert yamltext.dump_all(docs, sort_keys=True) == "a: ä\nb: 1\n---\nhostname: tirion\nkind: HostnameConfig\n"
    assert list(yamltext.load_all(text)) == docs
    shared = {"x": 1}
    assert "&" not in yamltext.dump_all([{"a": shared, "b": shared}])
