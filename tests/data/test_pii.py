"""PII filter: every category is found (also in full-width form); math and code are not flagged."""

from __future__ import annotations

import pytest

from swallow_train.data.pii import conversation_pii, find_pii, luhn_valid, my_number_valid

POSITIVE = [
    ("email", "連絡は taro.yamada@example.co.jp までお願いします"),
    ("email", "mail ＴＡＲＯ＠ＥＸＡＭＰＬＥ．ＣＯＭ please"),
    ("phone", "電話番号は03-1234-5678です"),
    ("phone", "携帯 ０９０－１２３４－５６７８ にどうぞ"),
    ("phone", "call 090 1234 5678"),
    ("phone", "Call me at (415) 555-0132 tomorrow."),
    ("phone", "Our office: +81 3 1234 5678"),
    ("address", "〒100-0005 に送ってください"),
    ("address", "住所は東京都千代田区丸の内1-9-1です"),
    ("address", "大阪府大阪市北区梅田3丁目1番"),
    ("address", "Send it to 12 Maple Street, Springfield."),
    ("address", "Springfield, IL 62701"),
    ("my_number", "個人番号 1234 5678 9018"),
    ("my_number", "マイナンバー123456789018"),
    ("credit_card", "card 4111 1111 1111 1111 exp 12/29"),
    ("credit_card", "カード番号：５５５５－５５５５－５５５５－４４４４"),
    ("credit_card", "amex 378282246310005"),
]

NEGATIVE = [
    "2024-01-15 の会議は 10:30 から",
    "x = 12345678901234 + 5; print(x @ y.T)",
    "@property\ndef name(self): return self._name",
    "Solve 3x + 5 = 20, then 1,234,567 / 89",
    "ISBN 978-4-06-123456-7",
    "1000000007 is prime; 998244353 too",
    "東京都は日本の首都です。大阪市は大きい。",
    "He walked down the street to the main road.",
    "123456789012",  # 12 digits, wrong check digit
    "4111 1111 1111 1112",  # fails Luhn
    "1234 5678 9018 3456",  # 16 digits: neither a My Number nor a card (Luhn fails)
    "version 3.11.7, port 8080, pid 12345",
]


@pytest.mark.parametrize(("category", "text"), POSITIVE)
def test_finds(category: str, text: str) -> None:
    assert category in find_pii(text)


@pytest.mark.parametrize("text", NEGATIVE)
def test_does_not_flag(text: str) -> None:
    assert find_pii(text) == set()


def test_checksums() -> None:
    assert my_number_valid("123456789018") and not my_number_valid("123456789017")
    assert not my_number_valid("000000000000")
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")


def test_conversation_looks_at_every_role_and_reasoning() -> None:
    clean = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello", "reasoning_content": "greet"},
    ]
    assert conversation_pii(clean) == set()
    leaky = [dict(clean[0]), dict(clean[1], reasoning_content="user is bob@example.org")]
    assert conversation_pii(leaky) == {"email"}
    system = [{"role": "system", "content": "Operator line 03-1234-5678"}, *clean]
    assert conversation_pii(system) == {"phone"}
