"""Find the final answer in a model response and normalise it for `math-verify`.

slime hands the reward the response with special tokens kept (`skip_special_tokens=False`,
`no_stop_trim=True`): thinking included and `<|im_end|>` (or `<|endoftext|>`) at the end. The turn
ends at the first such token, so the response is cut there before anything else (`end_of_turn`).
The answer is looked for only after the last `</think>` (a response that opens `<think>` and
never closes it has no answer), in this order: the last `\\boxed{...}` / `\\fbox{...}`, the
Minerva form "The (final) answer is X", an "Answer: X" / "答え：X" line, the last inline math span
(`$...$`, `\\(...\\)`, `\\[...\\]`). Nothing else counts: a bare number somewhere in the text is
not an answer.

    >>> extract_answer("<think>3+4=7</think>The answer is \\\\boxed{7}.")
    '7'
    >>> normalize_answer("１２個")
    '12'
"""

from __future__ import annotations

import re
import unicodedata

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
END_TOKENS = ("<|im_end|>", "<|endoftext|>")
"""Qwen3's end-of-turn and end-of-text tokens: the model's turn ends at the first of them."""

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_FINAL_ANSWER = re.compile(
    r"(?:final\s+)?answer is[:\s]*(?P<ans>.+?)(?:\.\s*I hope it is correct|\.?\s*$)",
    re.IGNORECASE | re.MULTILINE,
)
_ANSWER_LINE = re.compile(
    r"(?:^|\n)\s*(?:\*\*)?(?:final\s+answer|answer|答え|解答|最終的な答え)(?:\*\*)?"
    r"\s*(?:は|:|：)\s*(?P<ans>[^\n]+)",
    re.IGNORECASE,
)
_MATH_SPANS = re.compile(r"\$\$(.+?)\$\$|\$(.+?)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
# A number followed only by Japanese text (a counter or unit): "12個", "500 円", "3人".
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005\u3007\u30f6"
_NUMBER_THEN_CJK = re.compile(rf"^(?P<num>[-+]?[\d.,/]*\d)\s*[{_CJK}]+$")
# "8 または 7", "7か8", "3と4": Japanese "or" / "and" between two numbers. math-verify reads
# "8 or 7" as the set {7, 8} (wrong against 7) but drops the Japanese word and reads the last
# number: a hedge with the right answer last would score 1, a reward RL would learn to hack.
_JA_BETWEEN_NUMBERS = re.compile(
    r"(?<=[\d}])\s*(?:または|もしくは|あるいは|および|及び|か|と|や|、)\s*(?=[-+\d\\])")
_TRAILING_PUNCT = ".。．、,;:!！ \t\n"
_SYMBOLS = {"−": "-", "²": "^2", "³": "^3", "×": "\\times ", "÷": "\\div ", "π": "\\pi "}


def end_of_turn(response: str) -> str:
    """`response` up to its first end-of-turn / end-of-text token (slime keeps them)."""
    cut = min((i for i in (response.find(t) for t in END_TOKENS) if i >= 0), default=-1)
    return response if cut < 0 else response[:cut]


def answer_region(response: str) -> str | None:
    """The text after the last `</think>` (of the turn, see `end_of_turn`); the whole turn when
    it never opens `<think>`; None when thinking was opened and never closed (no final answer
    was written)."""
    response = end_of_turn(response)
    if THINK_CLOSE in response:
        return response.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in response:
        return None
    return response


def _balanced(text: str, open_at: int) -> str | None:
    """Content of the `{...}` group opening at `text[open_at]`, or None when unbalanced."""
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "\\":  # an escaped brace (\{ or \}) does not count
            continue
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`, or `\\boxed 5`) in `text`."""
    starts = [(m.start(), m.end()) for cmd in _BOX_COMMANDS for m in re.finditer(re.escape(cmd),
                                                                                 text)]
    for _start, end in sorted(starts, reverse=True):
        rest = text[end:]
        stripped = rest.lstrip(" ")
        if stripped.startswith("{"):
            content = _balanced(text, end + (len(rest) - len(stripped)))
            if content is not None:
                return content.strip()
        elif rest.startswith(" ") and stripped:
            return re.split(r"[\s$]", stripped, maxsplit=1)[0].strip()
    return None


def _last_math_span(text: str) -> str | None:
    spans = [next(g for g in m.groups() if g is not None) for m in _MATH_SPANS.finditer(text)]
    spans = [s.strip() for s in spans if s.strip()]
    return spans[-1] if spans else None


def extract_answer(response: str) -> str | None:
    """The final answer of a response (see the module docstring), or None when there is none."""
    region = answer_region(response)
    if region is None or not region.strip():
        return None
    boxed = last_boxed(region)
    if boxed:
        return boxed
    finals = list(_FINAL_ANSWER.finditer(region))
    if finals:
        return _strip_math(finals[-1].group("ans"))
    lines = list(_ANSWER_LINE.finditer(region))
    if lines:
        inner = last_boxed(lines[-1].group("ans"))
        return inner or _strip_math(lines[-1].group("ans"))
    return _last_math_span(region)


def _strip_math(text: str) -> str | None:
    text = text.strip().strip(_TRAILING_PUNCT).strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            text = text[len(left) : -len(right)].strip()
            break
    return text or None


def normalize_answer(text: str) -> str:
    """Full-width digits and punctuation to ASCII (NFKC), the Unicode minus to '-', a Japanese
    counter or unit after a number dropped ("１２個" -> "12"), Japanese "or"/"and" between
    numbers made a list ("8 または 7" -> "8, 7", a set to math-verify, as "8 or 7" is), outer
    `$` and final punctuation removed. The result is what `math-verify` parses."""
    for symbol, latex in _SYMBOLS.items():
        text = text.replace(symbol, latex)
    text = unicodedata.normalize("NFKC", text).strip()
    text = _JA_BETWEEN_NUMBERS.sub(", ", text)
    text = _strip_math(text) or ""
    match = _NUMBER_THEN_CJK.match(text)
    if match:
        text = match.group("num")
    return text.strip()
