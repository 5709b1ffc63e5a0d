"""The n-grams that decontamination compares: text -> the set of 64-bit hashes of its n-grams.

Normalisation: Unicode NFKC (full-width Latin and digits become ASCII, half-width kana become
full-width), lower case, punctuation (Unicode category P: 、。「」？！,.()[]{}) removed, whitespace
collapsed; what remains is split into tokens: runs of letters and digits, and single symbols
(+ × = $ ^: category S, kept because they distinguish math problems).

Script: a token holding kana or kanji (or another script written without spaces between words:
hanzi) is a CJK token. A run of at least `en_n` consecutive non-CJK tokens is a word segment,
hashed as word `en_n`-grams; everything else that holds a CJK token is a character segment, its
tokens concatenated without spaces and hashed as character `ja_n`-grams. Short Latin runs inside
Japanese text (`Python 3`, numbers) thus stay in the character stream, and an English passage
quoted in a Japanese page (or the reverse) is still compared word by word. A segment shorter
than n has no n-grams.

    from swallow_train.data.ngrams import ngram_hashes
    ngram_hashes("日本で一番高い山は富士山で、標高は三七七六メートルです。", ja_n=20, en_n=13)
    # -> sorted unique uint64 array, one hash per distinct n-gram

Hashes: each character's code point is mixed (splitmix64) and n-grams are polynomial hashes mod
2^64 over the normalised characters, computed for all windows at once with prefix sums (numpy,
no Python loop per n-gram), then mixed again with the window's length.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

import numpy as np

_CJK = re.compile(r"[\u3005\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_TOKEN = re.compile(r"\w+|[^\w\s]")

_M64 = (1 << 64) - 1
_BASE = np.uint64(0x9E3779B97F4A7C15)  # odd, so invertible mod 2^64
_BASE_INV = np.uint64(pow(0x9E3779B97F4A7C15, -1, 1 << 64))
_C1, _C2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_POW: dict[str, np.ndarray] = {"b": np.ones(1, np.uint64), "inv": np.ones(1, np.uint64)}


@cache
def _punctuation() -> re.Pattern[str]:
    """Runs of whitespace and of Unicode category P (punctuation) in the Basic Multilingual
    Plane (built on first use)."""
    marks = "".join(chr(c) for c in range(0x10000) if unicodedata.category(chr(c))[0] == "P")
    return re.compile(f"[\\s{re.escape(marks)}]+")


def normalize(text: str) -> str:
    """NFKC, lower case, punctuation to spaces, whitespace collapsed."""
    return _punctuation().sub(" ", unicodedata.normalize("NFKC", text).lower()).strip()


def segments(text: str, en_n: int) -> tuple[list[str], list[list[str]]]:
    """(character segments as strings, word segments as token lists) of a normalised text."""
    tokens = _TOKEN.findall(text)
    if not _CJK.search(text):  # no CJK at all: one word segment
        return [], ([tokens] if len(tokens) >= en_n else [])
    chars: list[str] = []
    words: list[list[str]] = []
    group: list[str] = []  # the current character segment's tokens
    run: list[str] = []  # the current run of non-CJK tokens
    has_cjk = False

    def close_group() -> None:
        nonlocal has_cjk
        if has_cjk:
            chars.append("".join(group))
        group.clear()
        has_cjk = False

    for tok in [*tokens, None]:
        if tok is not None and not _CJK.search(tok):
            run.append(tok)
            continue
        if len(run) >= en_n:  # a long non-CJK run: its own word segment
            close_group()
            words.append(run)
        else:
            group.extend(run)
        run = []
        if tok is not None:
            group.append(tok)
            has_cjk = True
    close_group()
    return chars, words


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(B^j, B^-j) mod 2^64 for j < n (cached, grown by doubling)."""
    if _POW["b"].size < n:
        size = max(n, 2 * _POW["b"].size)
        with np.errstate(over="ignore"):
            for key, base in (("b", _BASE), ("inv", _BASE_INV)):
                steps = np.full(size, base, np.uint64)
                steps[0] = 1
                _POW[key] = np.cumprod(steps)  # 1, B, B^2, ... (wrapping mod 2^64)
    return _POW["b"][:n], _POW["inv"][:n]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (a bijection of uint64 that spreads every input bit)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _C1
        x = (x ^ (x >> np.uint64(27))) * _C2
    return x ^ (x >> np.uint64(31))


def span_hashes(text: str, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of text[s:e] for every (s, e): equal substrings, equal hashes."""
    if starts.size == 0:
        return np.empty(0, np.uint64)
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32).astype(np.uint64)
    powers, inverse = _powers(codes.size + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(codes.size + 1, np.uint64)
        np.cumsum(_mix(codes) * powers[: codes.size], out=prefix[1:])
        raw = (prefix[ends] - prefix[starts]) * inverse[starts]
        return _mix(raw ^ ((ends - starts).astype(np.uint64) * _C1))


def char_ngrams(segment: str, n: int) -> np.ndarray:
    """Hashes of every n-character window of a character segment."""
    count = len(segment) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    starts = np.arange(count, dtype=np.int64)
    return span_hashes(segment, starts, starts + n)


def word_ngrams(words: list[str], n: int) -> np.ndarray:
    """Hashes of every n-word window (the words joined by single spaces)."""
    count = len(words) - n + 1
    if count <= 0:
        return np.empty(0, np.uint64)
    lengths = np.fromiter((len(w) for w in words), np.int64, len(words))
    ends = np.cumsum(lengths + 1) - 1  # end of each word in " ".join(words)
    starts = ends - lengths
    return span_hashes(" ".join(words), starts[:count], ends[n - 1:])


def ngram_hashes(text: str, ja_n: int, en_n: int) -> np.ndarray:
    """Sorted, distinct hashes of the n-grams of `text` (see the module docstring)."""
    chars, words = segments(normalize(text), en_n)
    parts = [char_ngrams(s, ja_n) for s in chars] + [word_ngrams(w, en_n) for w in words]
    if not parts:
        return np.empty(0, np.uint64)
    return np.unique(np.concatenate(parts))
