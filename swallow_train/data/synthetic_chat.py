"""The tiny synthetic SFT chat set (`synthetic: tiny_sft_chat`): 320 Japanese and English
conversations in the `messages` format with `reasoning_content` on assistant turns: math with
worked steps, translation, short explanations and two-turn follow-ups, a fifth with a system
prompt. Ten conversations carry (fictional) personal data, two per PII category, so the PII
filter has something to count, and a few have long reasoning so that at the tiny pack length
(256 tokens) the too-long rule shows up in the stats.

    from swallow_train.data.synthetic_chat import tiny_sft_chat
    conversations = list(tiny_sft_chat())
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from swallow_train.data.synthetic import PLACES, TOPICS, math_problem, sentence_pair

COUNT = 320
SYSTEM = ("あなたは誠実で優秀な日本語のアシスタントです。", "You are a careful, helpful assistant.")


def my_number_check_digit(first11: str) -> int:
    """Check digit of a Japanese individual number (My Number) from its first 11 digits."""
    total = 0
    for n, digit in enumerate(reversed(first11), start=1):
        total += int(digit) * (n + 1 if n <= 6 else n - 5)
    rem = total % 11
    return 0 if rem <= 1 else 11 - rem


_MY_NUMBER = "36014285719" + str(my_number_check_digit("36014285719"))
# (category, Japanese?, user message) -- all fictional; two per category.
PII_TURNS = [
    (
        "email",
        True,
        "私のメールアドレスは hanako.sato@example.jp です。自己紹介文を書いてください。",
    ),
    ("email", False, "Reply to j.smith@example.com and thank him for the invitation."),
    ("phone", True, "明日の予約の件で 090-1234-5678 に電話してほしいと伝える文面を作って。"),
    ("phone", False, "Write a short note asking Mia to call me back at +1 415-555-0132."),
    ("address", True, "〒100-0001 東京都千代田区千代田1-1 宛ての手紙の書き出しを考えてください。"),
    ("address", False, "Draft a delivery note for 12 Maple Street, Springfield, IL 62701."),
    (
        "my_number",
        True,
        f"マイナンバーは {_MY_NUMBER[:4]} {_MY_NUMBER[4:8]} {_MY_NUMBER[8:]} "
        "です。手続きに必要な書類を教えて。",
    ),
    ("my_number", True, f"個人番号{_MY_NUMBER}を記入する欄はどこですか。"),
    ("credit_card", False, "My card is 4111 1111 1111 1111, expiry 12/29. Is this order safe?"),
    ("credit_card", True, "カード番号 5555-5555-5555-4444 で支払えるか確認したいです。"),
]


def _assistant(content: str, reasoning: str | None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "reasoning_content": reasoning}


def _math(rng: random.Random, long: bool) -> tuple[list[dict[str, Any]], int, bool]:
    q, steps, ans, ja = math_problem(rng)
    lead = (
        "問題文から必要な数を読み取ります。" if ja else "First, read the numbers off the problem."
    )
    checks = []
    if long:  # a long, repetitive verification that does not fit a 256-token pack
        line = (
            f"検算: 計算をもう一度確かめると答えは {ans} で一致します。"
            if ja
            else f"Check: redoing the computation gives {ans} again, so it is consistent."
        )
        checks = [line] * 16
    reasoning = "\n".join([lead, *steps, *checks])
    content = f"答えは {ans} です。" if ja else f"The answer is {ans}."
    return [{"role": "user", "content": q}, _assistant(content, reasoning)], ans, ja


def _translate(rng: random.Random) -> list[dict[str, Any]]:
    pairs = [sentence_pair(rng) for _ in range(rng.randint(1, 2))]
    ja, en = "".join(p[0] for p in pairs), " ".join(p[1] for p in pairs)
    if rng.random() < 0.5:
        user = f"次の文を英語に翻訳してください。\n{ja}"
        return [
            {"role": "user", "content": user},
            _assistant(en, "語順を英語に合わせ、時や場所の表現を文頭か文末に置きます。"),
        ]
    user = f"Translate into Japanese:\n{en}"
    return [
        {"role": "user", "content": user},
        _assistant(ja, "Keep the meaning and use natural Japanese word order."),
    ]


def _explain(rng: random.Random) -> list[dict[str, Any]]:
    ja = rng.random() < 0.5
    place, topic = rng.choice(PLACES), rng.choice(TOPICS)
    sents = [sentence_pair(rng)[0 if ja else 1] for _ in range(rng.randint(2, 3))]
    if ja:
        user = f"{place[0]}の{topic[0]}について簡単に教えてください。"
        reasoning = f"{place[0]}と{topic[0]}の要点を二、三文でまとめます。"
        return [{"role": "user", "content": user}, _assistant("".join(sents), reasoning)]
    user = f"Tell me briefly about {topic[1]} in {place[1]}."
    reasoning = f"Summarise {topic[1]} in {place[1]} in two or three sentences."
    return [{"role": "user", "content": user}, _assistant(" ".join(sents), reasoning)]


def _two_turns(rng: random.Random) -> list[dict[str, Any]]:
    first, ans, ja = _math(rng, long=False)
    user = "ありがとう。その答えを2倍するといくつですか。" if ja else "Thanks. What is twice that?"
    reasoning = f"{ans} × 2 = {2 * ans}"
    content = f"{2 * ans} です。" if ja else f"It is {2 * ans}."
    return [*first, {"role": "user", "content": user}, _assistant(content, reasoning)]


def _pii(index: int) -> list[dict[str, Any]]:
    _, ja, user = PII_TURNS[index]
    reply = "承知しました。以下のように書くとよいでしょう。" if ja else "Sure, here is a draft."
    reasoning = "依頼の要点を確認します。" if ja else "Check what the user asks for."
    return [{"role": "user", "content": user}, _assistant(reply, reasoning)]


def tiny_sft_chat() -> Iterator[dict[str, Any]]:
    rng = random.Random(7)
    pii_at = {17 + 31 * k: k for k in range(len(PII_TURNS))}
    long_at = {40, 111, 204, 287}
    for i in range(COUNT):
        if i in pii_at:
            messages = _pii(pii_at[i])
        elif i in long_at:
            messages = _math(rng, long=True)[0]
        else:
            roll = rng.random()
            if roll < 0.35:
                messages = _math(rng, long=False)[0]
            elif roll < 0.55:
                messages = _translate(rng)
            elif roll < 0.85:
                messages = _explain(rng)
            else:
                messages = _two_turns(rng)
        if rng.random() < 0.2:
            system = (
                SYSTEM[0] if any("\u3040" <= c <= "\u30ff" for c in str(messages)) else SYSTEM[1]
            )
            messages = [{"role": "system", "content": system}, *messages]
        yield {"id": i, "messages": messages}
