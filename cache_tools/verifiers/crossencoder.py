"""Cross-encoder verifier: MiniLM reading (query, cached prompt) together, scored 0..1.

Initialised from the packaged all-MiniLM-L6-v2 weights (a fresh 1-logit head) and fine-tuned by
`train_cross_encoder` on labelled pairs plus hard negatives mined from the cache's own retrieval.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cache_proxy.verify.artifacts import MARKER
from cache_proxy.verify.candidate import Candidate
from cache_tools.verifiers.cross_model import load_cross_encoder
from cache_tools.verifiers.crossencoder_export import export_cross_encoder

log = logging.getLogger(__name__)
Example = tuple[str, str, int]


class CrossEncoderVerifier:
    """The torch model as a scorer (offline checks; the proxy serves the ONNX export)."""

    def __init__(self, path: str | Path) -> None:
        import torch

        self._torch = torch
        self._encoder = load_cross_encoder(str(path))
        self._encoder.model.eval()
        # Fast tokenizers are not safe to call from several threads at once ("Already borrowed").
        self._lock = threading.Lock()

    def score(self, query: str, candidates: Sequence[Candidate]) -> list[float]:
        return self.score_pairs([(query, c) for c in candidates])

    def score_pairs(self, pairs: Sequence[tuple[str, Candidate]]) -> list[float]:
        """Scores (query, candidate) pairs in one forward pass (offline sweeps batch queries)."""
        if not pairs:
            return []
        with self._lock, self._torch.inference_mode():
            batch = self._encoder.tokenizer(
                [q for q, _ in pairs], [c.text for _, c in pairs],
                padding=True, truncation=True, max_length=128, return_tensors="pt",
            )  # fmt: skip
            logits = self._encoder.model(**batch).logits[:, 0]
            return [float(x) for x in self._torch.sigmoid(logits)]


def _batches(examples: list[Example], batch_size: int, seed: int) -> list[list[Example]]:
    shuffled = examples[:]
    random.Random(seed).shuffle(shuffled)
    return [shuffled[i : i + batch_size] for i in range(0, len(shuffled), batch_size)]


def train_cross_encoder(
    examples: list[Example],
    out_dir: str | Path,
    base_model: str,
    max_minutes: float = 40.0,
    batch_size: int = 32,
    learning_rate: float = 4e-5,
    seed: int = 0,
) -> dict[str, Any]:
    """One pass over the (shuffled) examples, stopped early at `max_minutes`; saves the model."""
    import torch

    torch.manual_seed(seed)
    encoder = load_cross_encoder(base_model, num_labels=1)
    batches = _batches(examples, batch_size, seed)
    optimizer, schedule = _optimizer(encoder.model, learning_rate, len(batches))
    encoder.model.train()
    started, steps = time.monotonic(), 0
    progress = tqdm(batches, desc="train cross-encoder", unit="batch", mininterval=10)
    for batch in progress:
        loss = _train_step(encoder, batch, optimizer, schedule)
        steps += 1
        progress.set_postfix(loss=f"{loss:.3f}", refresh=False)
        if time.monotonic() - started > max_minutes * 60:
            log.warning("cross-encoder training stopped at the %.0f-minute budget", max_minutes)
            break
    return _save(encoder, out_dir, steps, len(batches), time.monotonic() - started, len(examples))


def _optimizer(model: Any, learning_rate: float, total: int) -> tuple[Any, Any]:
    """AdamW with 10% linear warm-up, then linear decay to zero at the last planned step."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / warmup, max(0.0, (total - step) / total))
    )
    return optimizer, schedule


def _train_step(encoder: Any, batch: list[Example], optimizer: Any, schedule: Any) -> float:
    import torch

    inputs = encoder.tokenizer(
        [a for a, _, _ in batch], [b for _, b, _ in batch],
        padding=True, truncation=True, max_length=128, return_tensors="pt",
    )  # fmt: skip
    labels = torch.tensor([float(y) for _, _, y in batch])
    loss: Any = torch.nn.functional.binary_cross_entropy_with_logits(
        encoder.model(**inputs).logits[:, 0], labels
    )
    loss.backward()
    torch.nn.utils.clip_grad_norm_(encoder.model.parameters(), 1.0)
    optimizer.step()
    schedule.step()
    optimizer.zero_grad()
    return float(loss.item())


def _save(
    encoder: Any, out_dir: str | Path, steps: int, planned: int, seconds: float, n_examples: int
) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoder.model.eval()
    encoder.save(str(out))
    info = {
        "kind": "crossencoder", "steps": steps, "planned_steps": planned,
        "train_seconds": round(seconds, 1), "examples": n_examples,
    }  # fmt: skip
    (out / MARKER).write_text(json.dumps(info, indent=2))
    export_cross_encoder(out, encoder)  # the serving copy: the proxy reads only this
    return info
