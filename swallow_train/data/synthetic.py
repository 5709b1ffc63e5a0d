"""Deterministic synthetic corpora for the tiny CPU default and the tests: Japanese and English
prose, a Japanese-English parallel corpus, math problems with worked reasoning, and Python code
(CPT), plus a bilingual chat set with reasoning (SFT, in `synthetic_chat.py`). Every generator is
seeded, so the same name always gives byte-identical JSONL; all of them together are well under
1 MB and take well under a second. The named sets and `materialize` are in `synthetic_sets.py`.

    from swallow_train.data.synthetic import ja_text
    record = ja_text(random.Random(0))        # {"text": ...}
"""

from __future__ import annotations

import random
from typing import Any

# Aligned (Japanese, English) phrase tables: the same slot choice gives a sentence and its
# translation, which is what the parallel corpus needs.
PLACES = [
    ("東京", "Tokyo"),
    ("大阪", "Osaka"),
    ("京都", "Kyoto"),
    ("札幌", "Sapporo"),
    ("福岡", "Fukuoka"),
    ("仙台", "Sendai"),
    ("名古屋", "Nagoya"),
    ("広島", "Hiroshima"),
    ("那覇", "Naha"),
    ("金沢", "Kanazawa"),
    ("長野", "Nagano"),
    ("神戸", "Kobe"),
]
PEOPLE = [
    ("研究者", "researchers"),
    ("学生", "students"),
    ("市民", "residents"),
    ("技術者", "engineers"),
    ("料理人", "cooks"),
    ("農家", "farmers"),
    ("医師", "doctors"),
    ("作家", "writers"),
    ("旅行者", "travellers"),
    ("教師", "teachers"),
    ("職人", "craftspeople"),
]
TOPICS = [
    ("新しい技術", "new technology"),
    ("地域の歴史", "the local history"),
    ("季節の料理", "seasonal dishes"),
    ("古い建物", "old buildings"),
    ("伝統的な祭り", "traditional festivals"),
    ("天気の変化", "changes in the weather"),
    ("星の観測", "observing the stars"),
    ("川の生態系", "the river ecosystem"),
    ("昔話", "old folk tales"),
    ("数学の問題", "mathematics problems"),
    ("森の保全", "protecting the forest"),
    ("港の発展", "the growth of the port"),
]
ACTIONS = [
    ("調べています", "are studying"),
    ("紹介しました", "introduced"),
    ("楽しんでいます", "are enjoying"),
    ("記録しました", "recorded"),
    ("守り続けています", "keep preserving"),
    ("議論しました", "discussed"),
    ("学んでいます", "are learning about"),
]
TIMES = [
    ("毎年春になると", "Every spring"),
    ("先週", "Last week"),
    ("昨年の秋", "Last autumn"),
    ("朝早く", "Early in the morning"),
    ("休日には", "On holidays"),
    ("夏の夜", "On summer nights"),
]
QUALITIES = [
    ("興味深い", "interesting"),
    ("重要だ", "important"),
    ("美しい", "beautiful"),
    ("複雑だ", "complicated"),
    ("身近だ", "familiar"),
]
LINKS_JA = ["また、", "さらに、", "一方で、", "そのため、", "例えば、", ""]
LINKS_EN = ["Also, ", "Moreover, ", "On the other hand, ", "For this reason, ", "For example, ", ""]


def _slots(rng: random.Random) -> dict[str, tuple[str, str]]:
    return {
        "t": rng.choice(TIMES),
        "p": rng.choice(PLACES),
        "w": rng.choice(PEOPLE),
        "o": rng.choice(TOPICS),
        "a": rng.choice(ACTIONS),
        "q": rng.choice(QUALITIES),
    }


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    """One Japanese sentence and its English translation."""
    s, form = _slots(rng), rng.randrange(3)
    if form == 0:
        ja = f"{s['t'][0]}、{s['p'][0]}の{s['w'][0]}は{s['o'][0]}について{s['a'][0]}。"
        en = f"{s['t'][1]}, {s['w'][1]} in {s['p'][1]} {s['a'][1]} {s['o'][1]}."
    elif form == 1:
        ja = f"{s['p'][0]}の{s['w'][0]}にとって、{s['o'][0]}はとても{s['q'][0]}。"
        ja = ja.replace("だ。", "です。")
        en = f"For {s['w'][1]} in {s['p'][1]}, {s['o'][1]} is very {s['q'][1]}."
    else:
        n = rng.randint(2, 98)
        ja = f"{s['p'][0]}では{n}人の{s['w'][0]}が{s['o'][0]}について{s['a'][0]}。"
        en = f"In {s['p'][1]}, {n} {s['w'][1]} {s['a'][1]} {s['o'][1]}."
    return ja, en


def _prose(rng: random.Random, lang: int) -> dict[str, Any]:
    place, topic = rng.choice(PLACES), rng.choice(TOPICS)
    title = f"{place[0]}と{topic[0]}" if lang == 0 else f"{place[1]} and {topic[1]}"
    links = LINKS_JA if lang == 0 else LINKS_EN
    body = []
    for i in range(rng.randint(4, 14)):
        text = sentence_pair(rng)[lang]
        link = rng.choice(links) if i else ""
        body.append(link + (text if lang == 0 or not link else text[0].lower() + text[1:]))
    sep = "" if lang == 0 else " "
    return {"text": title + "\n\n" + sep.join(body)}


def ja_text(rng: random.Random) -> dict[str, Any]:
    return _prose(rng, 0)


def en_text(rng: random.Random) -> dict[str, Any]:
    return _prose(rng, 1)


def parallel(rng: random.Random) -> dict[str, Any]:
    pairs = [sentence_pair(rng) for _ in range(rng.randint(1, 4))]
    ja, en = "".join(p[0] for p in pairs), " ".join(p[1] for p in pairs)
    text = f"日本語: {ja}\nEnglish: {en}" if rng.random() < 0.5 else f"English: {en}\n日本語: {ja}"
    return {"text": text}


def math_problem(rng: random.Random) -> tuple[str, list[str], int, bool]:
    """(question, reasoning steps, integer answer, in Japanese?) of one word problem."""
    ja = rng.random() < 0.5
    kind = rng.randrange(3)
    if kind == 0:
        price, n = rng.randint(3, 40) * 10, rng.randint(2, 9)
        paid = ((price * n) // 1000 + 1) * 1000
        ans = paid - price * n
        q = (
            f"1個{price}円のりんごを{n}個買い、{paid}円札で払いました。おつりはいくらですか。"
            if ja
            else f"Apples cost {price} yen each. Ken buys {n} and pays {paid} yen. "
            "How much change does he get?"
        )
        steps = (
            [
                f"代金は {price} × {n} = {price * n} 円です。",
                f"おつりは {paid} - {price * n} = {ans} 円です。",
            ]
            if ja
            else [
                f"The apples cost {price} × {n} = {price * n} yen.",
                f"The change is {paid} - {price * n} = {ans} yen.",
            ]
        )
    elif kind == 1:
        a, x, b = rng.randint(2, 9), rng.randint(-9, 15), rng.randint(1, 30)
        c = a * x + b
        q = f"{a}x + {b} = {c} を解きなさい。" if ja else f"Solve {a}x + {b} = {c} for x."
        steps = [f"{a}x = {c} - {b} = {c - b}", f"x = {c - b} / {a} = {x}"]
        ans = x
    else:
        first, diff, n = rng.randint(1, 9), rng.randint(1, 6), rng.randint(5, 20)
        last = first + (n - 1) * diff
        ans = n * (first + last) // 2
        q = (
            f"初項{first}、公差{diff}の等差数列の最初の{n}項の和を求めなさい。"
            if ja
            else f"Find the sum of the first {n} terms of the arithmetic sequence with first term "
            f"{first} and common difference {diff}."
        )
        steps = [
            f"a_{n} = {first} + ({n} - 1) × {diff} = {last}",
            f"S = {n} × ({first} + {last}) / 2 = {ans}",
        ]
    return q, steps, ans, ja


def math(rng: random.Random) -> dict[str, Any]:
    q, steps, ans, ja = math_problem(rng)
    head = ("問題", "解答") if ja else ("Problem", "Solution")
    text = f"{head[0]}: {q}\n\n{head[1]}:\n" + "\n".join(steps) + f"\n\nAnswer: \\boxed{{{ans}}}"
    return {"text": text}


_CODE = [
    (
        "sum_of_squares",
        "Return 1^2 + 2^2 + ... + n^2.",
        "1からnまでの二乗の和を返す。",
        "    total = 0\n    for i in range(1, n + 1):\n        total += i * i\n    return total",
    ),
    (
        "is_prime",
        "Return True when n is a prime number.",
        "nが素数ならTrueを返す。",
        "    if n < 2:\n        return False\n    k = 2\n    while k * k <= n:\n"
        "        if n % k == 0:\n            return False\n        k += 1\n    return True",
    ),
    (
        "fibonacci",
        "Return the n-th Fibonacci number.",
        "n番目のフィボナッチ数を返す。",
        "    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    ),
    (
        "digit_sum",
        "Return the sum of the decimal digits of n.",
        "nの各桁の和を返す。",
        "    return sum(int(c) for c in str(abs(n)))",
    ),
    (
        "collatz_steps",
        "Count the Collatz steps from n down to 1.",
        "nが1になるまでの手数を数える。",
        "    steps = 0\n    while n > 1:\n        n = n // 2 if n % 2 == 0 else 3 * n + 1\n"
        "        steps += 1\n    return steps",
    ),
]


def code(rng: random.Random) -> dict[str, Any]:
    name, doc_en, doc_ja, body = rng.choice(_CODE)
    fn = f"{name}_{rng.randint(0, 999)}" if rng.random() < 0.5 else name
    doc = doc_ja if rng.random() < 0.3 else doc_en
    arg = rng.randint(3, 30)
    text = (
        f'def {fn}(n: int) -> int:\n    """{doc}"""\n{body}\n\n\n'
        f'if __name__ == "__main__":\n    print({fn}({arg}))\n'
    )
    return {"text": text}
