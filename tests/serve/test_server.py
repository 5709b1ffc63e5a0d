"""`swallow-train serve` (run by the training venv, as a user would) starts vLLM's
OpenAI-compatible server from .venv-serve on 127.0.0.1, with the export's generation_config
defaults and the qwen3 reasoning parser, and answers a chat completion greedily with
transformers' greedy tokens (bf16, ties aside).

    make test-serve
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.serve.conftest import REPO, training_python
from tests.serve.helpers import PROMPT, chat_prompt_ids, off_greedy

vllm = pytest.importorskip("vllm", reason="vLLM runs in .venv-serve: make test-serve")
openai = pytest.importorskip("openai")

START_TIMEOUT_S = 300


def _wait_ready(proc: subprocess.Popen, client, log: Path, name: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited ({proc.returncode}):\n{log.read_text()[-6000:]}")
        try:
            if [m.id for m in client.models.list().data] == [name]:
                return
        except openai.APIConnectionError:
            pass
        time.sleep(1)
    pytest.fail(f"no server after {START_TIMEOUT_S} s:\n{log.read_text()[-6000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's process group, then SIGKILL to whatever of it is left (vLLM's
    engine process)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_serve_answers_a_chat_completion(tiny_run: Path, free_port: int, tmp_path: Path) -> None:
    hf = tiny_run / "rl" / "hf"
    name = f"{tiny_run.name}-rl"  # the served model: <run>-<stage>
    log = tmp_path / "server.log"
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    cmd = [str(training_python()), "-m", "swallow_train", "serve", str(hf), "--port",
           str(free_port), "--", "--max-model-len", "128", "--max-num-batched-tokens", "128",
           "--max-num-seqs", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{free_port}/v1", api_key="unused",
                           timeout=60, max_retries=0)
    try:
        _wait_ready(proc, client, log, name)
        reply = client.chat.completions.create(model=name, messages=PROMPT,
                                               temperature=0, max_tokens=12,
                                               extra_body={"ignore_eos": True,
                                                           "return_token_ids": True})
    finally:
        _stop(proc)
    text = log.read_text()
    # the export's generation_config.json became the server's sampling defaults
    assert ("'temperature': 0.6, 'top_k': 20, 'top_p': 0.95, 'min_p': 0.0" in text), text[-4000:]
    assert "--reasoning-parser qwen3 --generation-config auto --enforce-eager" in text
    choice = reply.choices[0]
    assert reply.model == name and reply.usage.completion_tokens == 12
    assert reply.prompt_token_ids == chat_prompt_ids(hf)
    # the export's bf16, as served: transformers' greedy token at every step (up to bf16 ties)
    assert off_greedy(hf, reply.prompt_token_ids, choice.token_ids, "bfloat16") == []
