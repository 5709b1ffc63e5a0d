"""Personally identifiable information (PII) filter for chat data: a conversation in which any
message (content or reasoning) contains an e-mail address, a phone number, a postal address, a
Japanese individual number (My Number) or a credit-card number is excluded, and counted per
category.

Text is NFKC-normalised first, so full-width digits and hyphens (０９０－１２３４－５６７８) match
like ASCII ones. Digit patterns are checked beyond their shape to keep math and code data from
being flagged: a My Number must have a valid check digit (the official mod-11 weights), a card
number must pass the Luhn check and start with a known issuer prefix, and a phone number must
have the digit count of its numbering plan.

    from swallow_train.data.pii import find_pii
    find_pii("連絡先: taro@example.jp / 03-1234-5678")   # {'email', 'phone'}
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

CATEGORIES = ("email", "phone", "address", "my_number", "credit_card")

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})*"
    r"\.[A-Za-z]{2,24}(?![\w-])"
)
# Japanese numbers: 0 + area/mobile code, hyphenated (or in brackets), 10-11 digits in all.
_PHONE_JP = re.compile(
    r"(?<![\d-])(?:0\d{1,4}-\d{1,4}-\d{3,4}|\(0\d{1,4}\)\s?\d{1,4}-\d{4})(?![\d-])"
)
_PHONE_JP_MOBILE = re.compile(r"(?<![\d-])0[5789]0[ -]?\d{4}[ -]?\d{4}(?![\d-])")
# International (+CC ...) and North American (555) 123-4567 / 555-123-4567.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\d])")
_PHONE_NANP = re.compile(r"(?<![\d-])(?:\(\d{3}\)\s?|\d{3}[-.])\d{3}[-.]\d{4}(?![\d-])")

_KANJI_KANA = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005"
_ADDRESS_JP = re.compile(
    r"〒\s?\d{3}-?\d{4}|郵便番号\s?[:：]?\s?\d{3}-\d{4}"
    rf"|(?:東京都|北海道|大阪府|京都府|[{_KANJI_KANA}]{{2,3}}県)[{_KANJI_KANA}]{{1,12}}?[市区町村郡]"
    rf"[{_KANJI_KANA}]{{0,14}}?\d{{1,4}}(?:丁目|番地|番|-\d{{1,4}})"
)
_STREET = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Parkway|"
    r"Pkwy|Place|Pl|Terrace|Way"
)
_ADDRESS_EN = re.compile(
    rf"\b\d{{1,6}}\s+(?:[A-Z][a-zA-Z]+\s+){{1,3}}(?:{_STREET})\b\.?"
    r"|\b[A-Z][a-zA-Z]+,\s+[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"
)
# 12 digits in groups of 4 (My Number) and 13-19 digits (cards), optionally separated by a
# space or hyphen; never part of a longer digit run.
_MY_NUMBER = re.compile(r"(?<![\d])(?<!\d[ -])\d{4}([ -]?)\d{4}\1\d{4}(?![ -]?\d)")
_CARD = re.compile(r"(?<![\d])(?<!\d[ -])\d(?:[ -]?\d){12,18}(?![ -]?\d)")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|35|6011|65)")


def my_number_valid(digits: str) -> bool:
    """True for 12 digits whose last digit is the My Number check digit of the first 11."""
    if len(digits) != 12 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    total = sum(
        int(d) * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(reversed(digits[:11]), start=1)
    )
    rem = total % 11
    return int(digits[11]) == (0 if rem <= 1 else 11 - rem)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def _has_phone(text: str) -> bool:
    for m in _PHONE_JP.finditer(text):
        if len(_digits(m.group())) in (10, 11):
            return True
    if _PHONE_JP_MOBILE.search(text) or _PHONE_NANP.search(text):
        return True
    return any(8 <= len(_digits(m.group())) <= 15 for m in _PHONE_INTL.finditer(text))


def _has_card(text: str) -> bool:
    for m in _CARD.finditer(text):
        d = _digits(m.group())
        if _CARD_PREFIX.match(d) and luhn_valid(d) and len(set(d)) > 1:
            return True
    return False


def find_pii(text: str) -> set[str]:
    """The PII categories (names from CATEGORIES) found in `text`."""
    text = unicodedata.normalize("NFKC", text)
    found: set[str] = set()
    if "@" in text and _EMAIL.search(text):
        found.add("email")
    if _has_phone(text):
        found.add("phone")
    if _ADDRESS_JP.search(text) or _ADDRESS_EN.search(text):
        found.add("address")
    if any(my_number_valid(_digits(m.group())) for m in _MY_NUMBER.finditer(text)):
        found.add("my_number")
    if _has_card(text):
        found.add("credit_card")
    return found


def message_texts(messages: Iterable[dict[str, Any]]) -> Iterable[str]:
    for m in messages:
        yield m.get("content") or ""
        yield m.get("reasoning_content") or ""


def conversation_pii(messages: Iterable[dict[str, Any]]) -> set[str]:
    """The PII categories found anywhere in a conversation (every role, content and reasoning)."""
    found: set[str] = set()
    for text in message_texts(messages):
        if text:
            found |= find_pii(text)
    return found
