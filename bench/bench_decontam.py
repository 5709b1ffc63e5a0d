"""Cost of the decontamination check of `swallow-train prepare` against the tokenization it
runs beside, in the same process and run, on the same documents: CPU seconds per token.

    .venv/bin/python bench/bench_decontam.py                       # 400 ja + en documents
    .venv/bin/python bench/bench_decontam.py --index-ngrams 20000000 --docs 1000

The documents are the project's synthetic Japanese and English prose (~1,300 tokens each), as
in bench_prepare.py. The eval index is `--index-ngrams` random (n-gram hash, row) pairs saved
and memory-mapped like a real one (the size of the real suites, see README "Decontamination"),
plus the n-grams of a few documents so that matches happen. The baseline is the prepare
worker's `tokenize_batch`; the check is the worker's own (`decontam_check._check`: normalise,
segment, hash every n-gram, look each up). Printed: tokens per CPU-second of both, their
ratio, and the projected core-hours of the check over the 209.7B-token mixture.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from swallow_train.data import decontam_check
from swallow_train.data.cpt_tokenize import init_worker, tokenize_batch
from swallow_train.data.decontam import DecontamConfig, Lookup, text_hashes
from swallow_train.data.synthetic import en_text, ja_text

MIXTURE_TOKENS = 209.7e9


def documents(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["\n\n".join((ja_text if i % 2 == 0 else en_text)(rng)["text"] for _ in range(8))
            for i in range(n)]


def save_index(base: Path, n: int, planted: list[str], cfg: DecontamConfig) -> None:
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 2**63, size=n, dtype=np.uint64)
    extra = np.concatenate([text_hashes(d, cfg) for d in planted])
    keys = np.concatenate([keys, extra])
    order = np.argsort(keys)
    rows = (np.arange(keys.size) % 1000).astype(np.uint32)
    Lookup.of(keys[order], rows[order], np.zeros(1000, np.uint32)).save(str(base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--index-ngrams", type=int, default=10_000_000)
    args = ap.parse_args()
    texts = documents(args.docs, seed=0)
    cfg = DecontamConfig(eval_sets=["bench"])
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "index"
        save_index(base, args.index_ngrams, texts[:4], cfg)
        init_worker("bundled:qwen3")
        decontam_check.init_checked(str(base), cfg, None)
        cpu = time.process_time()
        tokens, _ = tokenize_batch(texts, "text")
        tok_s = time.process_time() - cpu
        cpu = time.process_time()
        found = sum(bool(decontam_check._check(t)) for t in texts)
        check_s = time.process_time() - cpu
    n_tok, chars = int(tokens.size), sum(map(len, texts))
    print(json.dumps({"documents": len(texts), "tokens": n_tok, "characters": chars,
                      "index_pairs": args.index_ngrams, "index_mib": args.index_ngrams * 12 / 2**20,
                      "documents_matching_the_planted_ones": found}))
    print(f"tokenize: {n_tok / tok_s:,.0f} tokens/CPU-s   check: {n_tok / check_s:,.0f} "
          f"tokens/CPU-s   check/tokenize CPU ratio: {check_s / tok_s:.2f}")
    print(f"projected check over {MIXTURE_TOKENS / 1e9:.1f}B tokens: "
          f"{MIXTURE_TOKENS / (n_tok / check_s) / 3600:,.0f} core-hours")


if __name__ == "__main__":
    main()
