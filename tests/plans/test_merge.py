"""plans.merge: chart values merged as Helm merges them."""

from __future__ import annotations

from plans import merge


def test_deep_merge_merges_maps_and_leaves_both_inputs_alone() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1, "h": {"i": [1]}}
    override = {"a": {"c": [2], "e": {"f": [1]}}, "g": [[3]]}
    merged = merge.deep_merge(base, override)
    assert merged == {"a": {"b": 1, "c": [2], "e": {"f": [1]}}, "d": 1, "h": {"i": [1]}, "g": [[3]]}
    merged["a"]["e"]["f"].append(2)
    merged["g"][0].append(4)
    merged["h"]["i"].append(2)
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1, "h": {"i": [1]}}
    assert override == {"a": {"c": [2], "e": {"f": [1]}}, "g": [[3]]}
