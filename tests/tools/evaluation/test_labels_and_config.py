from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import yaml

from cache_proxy.verify.policy import GuardPolicy, VerifierPolicy, VerifyPolicy
from cache_tools.evaluation.configfile import tenant_settings, write_tenant_settings
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import Pair, load_pairs, pair_bucket, split_pairs


def test_judging_follows_the_shared_definitions() -> None:
    book = LabelBook([Pair("a?", "b?", 1), Pair("a?", "c?", 0)])
    assert book.judge("a?", "a?") == "correct"
    assert book.judge("b?", "a?") == "correct"  # either order
    assert book.judge("c?", "a?") == "wrong"
    assert book.judge("a?", "d?") == "unjudged"
    assert book.answerable("b?", {"a?"}) and not book.answerable("c?", {"a?"})


def test_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    pairs = [Pair(f"q{i}?", f"p{i}?", i % 2) for i in range(400)]
    parts = [split_pairs(pairs, part) for part in ("train", "calib", "test")]
    assert sum(len(p) for p in parts) == 400
    assert all(len(p) > 50 for p in parts)
    assert pair_bucket(Pair("x", "y", 1)) == pair_bucket(Pair("y", "x", 0))  # order-free
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt") as out:
        out.writelines(json.dumps(p.__dict__) + "\n" for p in pairs)
    assert load_pairs(path) == pairs


def test_write_tenant_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "upstream: {url: 'http://engine:8000'}\n"
        "tenants:\n  acme: {api_keys: [k1], threshold: 0.9}\n  globex: {api_keys: [k2]}\n"
    )
    policy = VerifyPolicy(
        guards=GuardPolicy(entities=True),
        verifier=VerifierPolicy(enabled=True, model_path="/m", min_score=0.7),
    )
    assert write_tenant_settings(config, "acme", 0.87, policy)
    raw = yaml.safe_load(config.read_text())
    assert raw["upstream"] == {"url": "http://engine:8000"}
    assert raw["tenants"]["globex"] == {"api_keys": ["k2"]}
    assert raw["tenants"]["acme"]["api_keys"] == ["k1"]
    assert tenant_settings(config, "acme") == (0.87, policy)
    assert list(tmp_path.iterdir()) == [config]  # no temp file left behind


def test_the_reworded_statements_domain_is_well_formed() -> None:
    """tests/data/reworded_statements.jsonl.gz: the second domain (statements, not questions)."""
    from pathlib import Path

    from cache_tools.evaluation.pairs import load_pairs

    data = Path(__file__).resolve().parents[2] / "data" / "reworded_statements.jsonl.gz"
    pairs = load_pairs(data)
    assert len(pairs) >= 1000
    paraphrases = sum(p.label for p in pairs)
    assert paraphrases >= 800 and len(pairs) - paraphrases >= 200  # and hard negatives
    assert len({p.text_b for p in pairs}) == len(pairs)  # every prompt asked once
    assert all(p.text_a != p.text_b and not p.text_b.endswith("?") for p in pairs)


def test_pairs_files_of_the_common_shapes_load_and_a_foreign_one_is_refused(
    tmp_path: Path,
) -> None:
    from cache_tools.evaluation.pairs import PairsFileError

    rows = [
        {"question1": "How to bake bread?", "question2": "How is bread baked?", "is_duplicate": 1},
        {"sentence1": "The sky is blue.", "sentence2": "The sky is green.", "label": "0"},
        {"text_a": "a", "text_b": "b", "label": True},
        {"text_a": "a", "text_b": "c", "label": 0.5},  # not a 0/1 label: skipped
        {"premise": "x", "hypothesis": "y", "label": 1},  # no known shape: skipped
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert load_pairs(path) == [
        Pair("How to bake bread?", "How is bread baked?", 1),
        Pair("The sky is blue.", "The sky is green.", 0),
        Pair("a", "b", 1),
    ]
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text(json.dumps(rows[-1]) + "\n")
    with pytest.raises(PairsFileError, match="text_a/text_b/label"):
        load_pairs(foreign)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(PairsFileError, match="line 2"):
        load_pairs(broken)
