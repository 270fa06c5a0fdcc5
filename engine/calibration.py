"""Local text for quantization: calibration samples and held-out evaluation text.

Both are made like the tiny model's training corpus (engine/tiny_model.py): chat-formatted
question/answer pairs from docstrings of the pinned torch package, so nothing is downloaded.
Three disjoint sources:

- training:    tiny_model.CORPUS_MODULES (what the tiny model was trained on);
- calibration: CALIBRATION_MODULES (what GPTQ/AWQ see while quantizing);
- held-out:    HELDOUT_MODULES (what engine/quant_quality.py measures perplexity on).

Module lists alone do not make the texts disjoint (torch re-exports objects under several
names, and some docstrings are shared), so pairs are also filtered by answer: a calibration
pair whose answer is in the training corpus is dropped, and a held-out pair whose answer is
in the training corpus or the calibration pairs is dropped. Needs torch (either venv).
"""

from __future__ import annotations

import random
from typing import Any

from engine.tiny_model import (
    CORPUS_MODULES,
    SEED,
    chat_text,
    docstring_pairs,
)

CALIBRATION_MODULES = [
    "torch.nn.init",
    "torch.autograd",
    "torch.sparse",
    "torch.nn.utils",
    "torch.jit",
    "torch.export",
    "torch.onnx",
    "torch.library",
    "torch.compiler",
]
HELDOUT_MODULES = [
    "torch.masked",
    "torch.signal.windows",
    "torch.func",
    "torch.nested",
    "torch.nn.utils.rnn",
    "torch.profiler",
    "torch.accelerator",
    "torch.monitor",
    "torch.nn.attention",
    "torch.mps",
]
assert not (set(CALIBRATION_MODULES) & set(HELDOUT_MODULES)), "module lists overlap"
assert not (set(CALIBRATION_MODULES + HELDOUT_MODULES) & set(CORPUS_MODULES)), (
    "module lists overlap"
)


def _without(
    pairs: list[tuple[str, str]], *excluded: list[tuple[str, str]]
) -> list[tuple[str, str]]:
    """Pairs whose question and answer appear in none of the excluded lists, one per answer."""
    questions = {q for pair_list in excluded for q, _ in pair_list}
    answers = {a for pair_list in excluded for _, a in pair_list}
    kept: dict[str, tuple[str, str]] = {}
    for question, answer in pairs:
        if question not in questions and answer not in answers:
            kept.setdefault(answer, (question, answer))
    return sorted(kept.values())


def training_pairs() -> list[tuple[str, str]]:
    return docstring_pairs()


def calibration_pairs() -> list[tuple[str, str]]:
    return _without(docstring_pairs(CALIBRATION_MODULES), training_pairs())


def heldout_pairs() -> list[tuple[str, str]]:
    return _without(docstring_pairs(HELDOUT_MODULES), training_pairs(), calibration_pairs())


def shuffled(pairs: list[tuple[str, str]], salt: int = 0) -> list[tuple[str, str]]:
    """A fixed, seeded order (the same on every run)."""
    order = list(pairs)
    random.Random(SEED + salt).shuffle(order)
    return order


def calibration_texts(tokenizer: Any, samples: int, seq_len: int) -> list[str]:
    """SAMPLES texts, each as many whole conversations (seeded order) as fit in SEQ_LEN tokens
    (at least one). Cycles through the pairs if there are fewer than needed."""
    conversations = [chat_text(q, a) for q, a in shuffled(calibration_pairs(), salt=1)]
    texts: list[str] = []
    index = 0
    while len(texts) < samples:
        text, length = "", 0
        while True:
            conversation = conversations[index % len(conversations)]
            tokens = len(tokenizer(conversation, add_special_tokens=False)["input_ids"])
            if text and length + tokens > seq_len:
                break
            text, length, index = text + conversation, length + tokens, index + 1
        texts.append(text)
    return texts


def calibration_dataset(tokenizer: Any, samples: int, seq_len: int) -> Any:
    """A pre-tokenized datasets.Dataset (input_ids, attention_mask) oneshot accepts as-is."""
    from datasets import Dataset

    rows = [
        tokenizer(text, add_special_tokens=False, truncation=True, max_length=seq_len)
        for text in calibration_texts(tokenizer, samples, seq_len)
    ]
    return Dataset.from_dict(
        {
            "input_ids": [row["input_ids"] for row in rows],
            "attention_mask": [row["attention_mask"] for row in rows],
        }
    )
