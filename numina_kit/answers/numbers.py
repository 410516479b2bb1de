"""Exact numbers: the rational value of an answer string, and the exact integer it states (or None).

Numbers are parsed by a small recursive-descent parser over exact `Fraction`s with bounded powers, never by `eval`
or sympy, so it cannot hang. `parse_integer` rejects non-integers (`12.5` is None): Numina's AIMO-1 notebook rounded
them with `round(float(x))`, which turns a value nobody computed into a vote.
"""

import re
from fractions import Fraction

from numina_kit.answers.extract import strip_math


__all__ = ["exact_value", "parse_integer"]

_MAX_NUMBER_CHARS = 300  # longer "numbers" are not answers; bounding them keeps the parser's cost trivial
_MAX_POWER_BITS = 20_000  # 2^20000 is plenty for any answer; 5^(5^(5^5)) is rejected instead of computed
_TEXT_BLOCK = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}(?:\s*\^\s*\{?\d\}?)?")
_NUMERIC = re.compile(r"[+-]?[\d.,]+")
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(\\[a-zA-Z]+|\*\*|[-+*/^(){}\[\]]))")


def exact_value(answer: str, *, lenient: bool = False) -> Fraction | None:
    """The exact rational value of a numeric answer, or None when it is not a plain number.

    Understands integers, decimals, `1e3`, `+ - * /`, `^`/`**` with integer exponents (bounded size),
    parentheses, `\\frac`/`\\dfrac`/`\\tfrac` (also `\\frac43`), `\\cdot`, `\\times`, `\\div`, thousands commas
    (`1,000`, `10,\\!080`), LaTeX spacing, `$`/`\\$`, `\\text{13}`, degrees (`^\\circ`) and unit words in
    `\\text{}`/`\\mbox{}`. With `lenient`, also a trailing `%`, a leading `x =` and trailing plain unit words
    (`5 dollars`); those change meaning in general, so `is_equivalent` leaves them to the symbolic path.
    Anything else (`\\sqrt2`, `1,2`, `x+1`, `52_8`) gives None.
    """
    text = strip_math(answer)
    if not text or len(text) > _MAX_NUMBER_CHARS:
        return None
    text = text.replace("\u2212", "-").replace("{,}", ",")
    text = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", text)
    text = re.sub(r"\s*\\[,!;: ]\s*|~", "", text)
    text = re.sub(r"\\[dt]frac(?![a-zA-Z])", r"\\frac", text)
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree|°", "", text)
    text = text.replace("\\$", "").replace("$", "")
    text = _TEXT_BLOCK.sub(lambda m: m.group(1) if _NUMERIC.fullmatch(m.group(1).strip()) else " ", text)
    if lenient:
        text = re.sub(r"^\s*[A-Za-z](?:_\{?\w+\}?)?\s*=", "", text)
        text = re.sub(r"\s*\\?%\s*$", "", text)
        text = re.sub(r"(?:\s+[A-Za-z]{2,}\.?)+\s*$", "", text)
    text = text.strip()
    if re.fullmatch(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", text)
    text = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", text)
    try:
        return _ExactParser(text).parse()
    except (_NotANumber, ZeroDivisionError, OverflowError, RecursionError):
        return None


def parse_integer(answer: str | int | None) -> int | None:
    """`answer` as an exact integer, or None when it is not one.

    Accepts every form `exact_value(answer, lenient=True)` does whose value is whole: `$1,000$`, `\\text{13}`,
    `90^\\circ`, `12.0`, `\\dfrac{12}{4}`, `2^{10}`, `x = 5`, `50\\%`. Rejects everything else: `12.5` is None,
    not 12 (Numina rounded it), as are `\\sqrt{4}`, `1,2`, `52_8` and empty strings.
    """
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer
    value = exact_value(str(answer), lenient=True)
    if value is None or value.denominator != 1:
        return None
    return value.numerator


class _NotANumber(Exception):
    """The text is not a plain number (internal to `exact_value`)."""


class _ExactParser:
    """Recursive descent over + - * / ^ and \\frac with exact `Fraction` arithmetic."""

    _MULTIPLY = {"*", "\\cdot", "\\times"}
    _DIVIDE = {"/", "\\div"}
    _CLOSING = {"(": ")", "{": "}", "[": "]"}

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = _TOKEN.match(text, position)
            if not match:
                raise _NotANumber(text)
            self.tokens.append(("number", match.group(1)) if match.group(1) else ("op", match.group(2)))
            position = match.end()
        self.index = 0

    def parse(self) -> Fraction:
        if not self.tokens:
            raise _NotANumber("empty")
        value = self._sum()
        if self.index != len(self.tokens):
            raise _NotANumber("trailing tokens")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        if self.index >= len(self.tokens):
            raise _NotANumber("unexpected end")
        self.index += 1
        return self.tokens[self.index - 1]

    def _sum(self) -> Fraction:
        value = self._product()
        while self._peek() in ("+", "-"):
            sign = self._take()[1]
            value = value + self._product() if sign == "+" else value - self._product()
        return value

    def _product(self) -> Fraction:
        value = self._unary()
        while self._peek() in self._MULTIPLY | self._DIVIDE:
            operator = self._take()[1]
            value = value * self._unary() if operator in self._MULTIPLY else value / self._unary()
        return value

    def _unary(self) -> Fraction:
        if self._peek() in ("+", "-"):
            sign = self._take()[1]
            value = self._unary()
            return -value if sign == "-" else value
        return self._power()

    def _power(self) -> Fraction:
        base = self._atom()
        if self._peek() not in ("^", "**"):
            return base
        self._take()
        exponent = self._unary()
        if exponent.denominator != 1:
            raise _NotANumber("fractional exponent")
        size = max(abs(base.numerator), base.denominator).bit_length()
        if size > 1 and abs(exponent.numerator) * size > _MAX_POWER_BITS:
            raise _NotANumber("power too large")
        return base**exponent.numerator

    def _atom(self) -> Fraction:
        kind, token = self._take()
        if kind == "number":
            return Fraction(token)
        if token in self._CLOSING:
            value = self._sum()
            if self._take()[1] != self._CLOSING[token]:
                raise _NotANumber("unbalanced")
            return value
        if token == "\\frac":
            numerator, denominator = self._group(), self._group()
            return numerator / denominator
        raise _NotANumber(token)

    def _group(self) -> Fraction:
        if self._take()[1] != "{":
            raise _NotANumber("\\frac without braces")
        value = self._sum()
        if self._take()[1] != "}":
            raise _NotANumber("unbalanced")
        return value
