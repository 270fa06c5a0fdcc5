"""Run in the engine venv: loads a model dir with transformers, prints facts as JSON.

.venv-engine/bin/python tests/engine/inspect_model.py MODEL_DIR
"""

from __future__ import annotations

import json
import sys
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

QUESTION = "What does torch.cat do?"
ROUND_TRIP_TEXT = "naïve café — 3.14 ≠ π; tensor([1, 2]) 🙂"


def inspect(model_dir: str) -> dict[str, Any]:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loaded: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = loaded.eval()
    messages = [{"role": "user", "content": QUESTION}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=64, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1] :].tolist()
    round_trip_ids = tokenizer.encode(ROUND_TRIP_TEXT, add_special_tokens=False)
    return {
        "config": model.config.to_dict(),
        "prompt": prompt,
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
        "vocab_size": len(tokenizer),
        "round_trip": tokenizer.decode(round_trip_ids) == ROUND_TRIP_TEXT,
        "new_tokens": new_tokens,
        "answer": tokenizer.decode(new_tokens, skip_special_tokens=True),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


if __name__ == "__main__":
    print(json.dumps(inspect(sys.argv[1])))
