"""Checksums of Russian personal identifiers, so a bare digit run is only called an ID when it validates.

    from medscribe.phi.ids import snils_valid, inn_valid, oms_valid
    snils_valid("112-233-445 95")  # True

Each function takes the raw matched text (separators allowed) and returns False for anything malformed.
The makers (`make_snils`, ...) build valid numbers for surrogates and for the labeled evaluation corpus.
"""

from __future__ import annotations

import random

_INN10_WEIGHTS = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_1 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_INN12_WEIGHTS_2 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


def digits_of(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def snils_check(first9: str) -> int:
    """Control number of SNILS (Pension Fund rules): weighted sum 9..1, mod 101, 100/101 -> 0."""
    total = sum(int(d) * w for d, w in zip(first9, range(9, 0, -1), strict=False))
    if total < 100:
        return total
    if total in (100, 101):
        return 0
    rest = total % 101
    return 0 if rest == 100 else rest


def snils_valid(text: str) -> bool:
    d = digits_of(text)
    if len(d) != 11:
        return False
    return snils_check(d[:9]) == int(d[9:])


def _inn_digit(digits: str, weights: tuple[int, ...]) -> int:
    return sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_valid(text: str) -> bool:
    """INN of an organization (10 digits) or a person (12 digits), by the tax service's checksum."""
    d = digits_of(text)
    if len(d) == 10:
        return _inn_digit(d[:9], _INN10_WEIGHTS) == int(d[9])
    if len(d) == 12:
        return _inn_digit(d[:10], _INN12_WEIGHTS_1) == int(d[10]) and _inn_digit(
            d[:11], _INN12_WEIGHTS_2
        ) == int(d[11])
    return False


def luhn_valid(text: str) -> bool:
    d = digits_of(text)
    if not d:
        return False
    total = 0
    for i, ch in enumerate(reversed(d)):
        n = int(ch)
        if i % 2 == 1:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


def oms_check(first15: str) -> int:
    """Control digit of the unified OMS policy number (16 digits, FOMS order 79): a Luhn-style sum."""
    odd = "".join(first15[i] for i in range(14, -1, -2))  # from the right: positions 15, 13, ...
    even = "".join(first15[i] for i in range(13, -1, -2))
    number = str(int(odd) * 2) + even
    total = sum(int(ch) for ch in number)
    return (10 - total % 10) % 10


def oms_valid(text: str) -> bool:
    d = digits_of(text)
    return len(d) == 16 and oms_check(d[:15]) == int(d[15])


def make_snils(rng: random.Random) -> str:
    while True:
        first9 = f"{rng.randrange(1_002_000, 999_999_999):09d}"
        check = snils_check(first9)
        return f"{first9[:3]}-{first9[3:6]}-{first9[6:]} {check:02d}"


def make_inn(rng: random.Random, person: bool = True) -> str:
    if person:
        d = "".join(str(rng.randrange(10)) for _ in range(10))
        d += str(_inn_digit(d, _INN12_WEIGHTS_1))
        d += str(_inn_digit(d, _INN12_WEIGHTS_2))
        return d
    d = "".join(str(rng.randrange(10)) for _ in range(9))
    return d + str(_inn_digit(d, _INN10_WEIGHTS))


def make_oms(rng: random.Random) -> str:
    d = "".join(str(rng.randrange(10)) for _ in range(15))
    return d + str(oms_check(d))
