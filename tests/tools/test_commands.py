"""calibrate / eval on 600 real QQP pairs (tests/data: the first lines of the shared dev file)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from cache_proxy.cli import main
from cache_proxy.config import parse_settings
from cache_proxy.verify.decision import HitDecider
from cache_proxy.verify.policy import GuardPolicy, VerifyPolicy
from cache_proxy.verify.verifier import VerifierRegistry
from cache_tools.evaluation.labels import LabelBook
from cache_tools.evaluation.pairs import load_pairs
from cache_tools.evaluation.simulate import simulate
from cache_tools.evaluation.sweep import Setting, build_grid, replay
from cache_tools.evaluation.training import table_for

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "qqp_dev_first600.jsonl.gz"
pytest.importorskip("sklearn")  # the [train] and [eval] extras


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 600 pairs, embedded once per module into a temporary cache."""
    target = tmp_path_factory.mktemp("pairs") / "pairs.jsonl.gz"
    shutil.copyfile(SAMPLE, target)
    return target


@pytest.fixture(autouse=True)
def embedding_cache(pairs_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_PROXY_EVAL_CACHE", str(pairs_file.parent / "cache"))


def test_fast_sweep_matches_the_real_decider(pairs_file: Path) -> None:
    pairs = load_pairs(pairs_file)
    book, table = LabelBook(pairs), table_for(pairs)
    grid, _, _ = build_grid(pairs, book, table)
    guards = GuardPolicy(numbers=True, negation=True, antonyms=False)
    decider = HitDecider(VerifierRegistry().load)
    summary = simulate(pairs, book, table, decider, 0.85, VerifyPolicy(guards=guards))
    replayed = replay(grid, Setting(0.85, ("numbers", "negation")))
    assert summary.hits > 0
    assert (summary.hits, summary.correct, summary.wrong, summary.unjudged) == (
        replayed.hits, replayed.correct, replayed.wrong, replayed.unjudged,
    )  # fmt: skip


def test_calibrate_writes_the_tenant_and_plot_then_eval_reads_it(
    pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "upstream: {url: 'http://engine:8000'}\n"
        "tenants:\n  acme: {api_keys: [k1]}\n  globex: {api_keys: [k2], threshold: 0.9}\n"
    )
    plot = tmp_path / "calibration.png"
    code = main([
        "calibrate", "--config", str(config), "--tenant", "acme", "--pairs", str(pairs_file),
        "--target-error", "0.25", "--error-kind", "judged", "--verifier", "features",
        "--verifier-dir", str(tmp_path / "verifiers"), "--plot", str(plot),
    ])  # fmt: skip
    assert code == 0
    settings = parse_settings(yaml.safe_load(config.read_text()))  # the proxy accepts it
    acme = settings.tenants["acme"]
    assert settings.tenants["globex"].threshold == 0.9
    assert acme.threshold != 0.95 or acme.verify.verifier.enabled
    if acme.verify.verifier.enabled:
        assert Path(acme.verify.verifier.model_path or "").is_dir()
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "held-out check" in capsys.readouterr().out

    assert (
        main(["eval", "--pairs", str(pairs_file), "--config", str(config), "--tenant", "acme"]) == 0
    )
    out = capsys.readouterr().out
    assert "wrong(j)" in out and "recall" in out and "answered" in out


def test_calibrate_refuses_an_unreachable_target(pairs_file: Path, tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    original = "upstream: {url: 'http://engine:8000'}\ntenants:\n  acme: {api_keys: [k1]}\n"
    config.write_text(original)
    code = main([
        "calibrate", "--config", str(config), "--tenant", "acme", "--pairs", str(pairs_file),
        "--target-error", "0.0", "--error-kind", "conservative", "--verifier", "none",
    ])  # fmt: skip
    assert code == 2
    assert config.read_text() == original


def test_train_verifier_fine_tunes_the_given_base_model(
    pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cache_proxy.embedding.loader import packaged_model_path
    from cache_tools.verifiers import crossencoder

    used: list[str] = []
    real = crossencoder.train_cross_encoder

    def recording(
        examples: list[crossencoder.Example], out: Path, base: str, **kw: float
    ) -> dict[str, Any]:
        used.append(base)
        return real(examples[:8], out, base, batch_size=8)

    monkeypatch.setattr(crossencoder, "train_cross_encoder", recording)
    base = tmp_path / "base"
    base.symlink_to(packaged_model_path())
    args = ["train-verifier", "--pairs", str(pairs_file), "--kind", "crossencoder"]
    assert main([*args, "--out", str(tmp_path / "ce"), "--base-model", str(base)]) == 0
    assert used == [str(base)] and (tmp_path / "ce" / "verifier.json").is_file()


def test_train_verifier_refuses_a_base_model_it_cannot_use(
    pairs_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train-verifier", "--pairs", str(pairs_file), "--out", str(tmp_path / "v")]
    assert main([*args, "--kind", "features", "--base-model", str(tmp_path)]) == 2
    assert main([*args, "--kind", "crossencoder", "--base-model", str(tmp_path / "none")]) == 2
    assert "--base-model" in capsys.readouterr().out


def test_eval_online_policy_reports_beside_the_oracle(
    pairs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["eval", "--pairs", str(pairs_file), "--policy", "online", "--judge", "labelled"]
    assert main(args) == 0
    out = capsys.readouterr().out
    # the default scorer is the proxy's own: similarity and the margin to the runner-up
    online = next(line for line in out.splitlines() if line.startswith("online, similarity+"))
    assert int(online.split()[-2]) > 0  # judge calls: it explored
    assert "oracle static" in out and "(judged" in out and "(conser" in out


def test_eval_on_a_file_without_pairs_says_which_fields_it_needs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"premise": "x", "hypothesis": "y", "label": 1}\n')
    for policy in ("static", "online"):
        assert main(["eval", "--pairs", str(foreign), "--policy", policy]) == 2
        error = capsys.readouterr().err
        assert "no labelled pairs" in error and "question1/question2/is_duplicate" in error
