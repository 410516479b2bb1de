"""Answers: from a model's text to an answer string, an exact integer, and the integer a competition accepts.

The pipeline for AIMO is `extract_answer` (the last `\\boxed{}`, else an "answer is" phrase), `parse_integer` (an
exact integer or None: `12.5` is rejected, not rounded as Numina's filter did, numina.md §7.3) and
`to_competition_answer` (the range rule of one competition from `COMPETITIONS`). Numbers are parsed by a small
exact-arithmetic parser (`Fraction`s, bounded powers), never by `eval` or sympy, so it cannot hang.
General LaTeX equivalence for MATH-style evaluation is `is_equivalent`, in `numina_kit.answers.equivalence`.
"""

import re
from dataclasses import dataclass
from fractions import Fraction

from numina_kit.errors import InputError


__all__ = [
    "COMPETITIONS",
    "CompetitionRule",
    "exact_value",
    "extract_answer",
    "extract_boxed",
    "is_equivalent",
    "parse_integer",
    "strip_math",
    "to_competition_answer",
]


@dataclass(frozen=True)
class CompetitionRule:
    """What a competition accepts: an integer in `low..high`, after reduction mod `modulus` when it has one.

    `fallback` is the answer to submit when no candidate gave a valid one (it lies in range, so a submission with
    nothing to vote on is still well-formed).
    """

    name: str
    low: int
    high: int
    modulus: int | None
    fallback: int

    def reduce(self, value: int) -> int | None:
        """`value` as this competition accepts it, or None when it cannot be submitted (see `to_competition_answer`)."""
        if value < 0:
            return None
        if self.modulus is not None:
            value %= self.modulus
        return value if self.low <= value <= self.high else None


COMPETITIONS: dict[str, CompetitionRule] = {
    # AIMO-1 (2024): answers 0..999; Numina's notebook reduced every answer mod 1000 (numina.md §2).
    "aimo1": CompetitionRule("aimo1", low=0, high=999, modulus=1000, fallback=0),
    # AIMO-2 (2025): answers 0..999, and each problem states its own reduction (peers.md §1).
    "aimo2": CompetitionRule("aimo2", low=0, high=999, modulus=None, fallback=0),
    # AIMO-3 (2026): answers 0..99999 (peers.md §1, §6).
    "aimo3": CompetitionRule("aimo3", low=0, high=99999, modulus=None, fallback=0),
}

_MAX_NUMBER_CHARS = 300  # longer "numbers" are not answers; bounding them keeps the parser's cost trivial
_MAX_POWER_BITS = 20_000  # 2^20000 is plenty for any answer; 5^(5^(5^5)) is rejected instead of computed


def extract_boxed(text: str) -> str | None:
    """The content of the last complete `\\boxed{...}` (or `\\fbox{...}`) in `text`, nested braces included.

    Escaped braces (`\\{`, `\\}`) do not count for balance. A box that is never closed (a generation cut off
    mid-answer) is skipped and the previous complete one is returned; `\\boxed 5` (no braces) gives `5`.
    Returns None when there is no complete box; an empty box gives "".
    """
    for match in reversed(list(_BOX.finditer(text))):
        start = match.end()
        if start < len(text) and text[start] == "{":
            content = _balanced_group(text, start)
            if content is not None:
                return content.strip()
        elif match.group(0)[-1].isspace():
            token = re.match(r"[^\s$]+", text[start:])
            if token:
                return token.group(0).rstrip(".,;")
    return None


def extract_answer(text: str) -> str | None:
    """The final answer a solution text states, as a string; None when it states none.

    In order: the last complete `\\boxed{}`/`\\fbox{}` (`extract_boxed`); else the text after the last "answer is"
    or "answer:" (as in "The final answer is $42$. I hope it is correct.", "The answer is 42."): a `$...$`, `\\(...\\)`
    or `\\[...\\]` right after the phrase, or the rest of that line up to the end of the sentence.
    Text from a new "### Problem:" header after the solution began is ignored, because a model that runs on past
    its answer writes a new problem and solves it. The whole text is read, not only its tail (numina.md §7.6).
    """
    if not text:
        return None
    begin = max(text.find("### Solution:"), 0) if text.lstrip().startswith("### Problem:") else 0
    cut = text.find("### Problem:", begin + 1)
    if cut != -1:
        text = text[:cut]
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed or None
    phrases = list(_ANSWER_PHRASE.finditer(text))
    if not phrases:
        return None
    rest = text[phrases[-1].end() :].lstrip(" *:")
    for opening, closing in _MATH_DELIMITERS:
        if rest.startswith(opening):
            end = re.compile(r"(?<!\\)" + re.escape(closing)).search(rest, len(opening))
            if end:
                answer = rest[len(opening) : end.start()].strip()
                return answer or None
    line = rest.split("\n", 1)[0]
    line = re.split(r"\.(?=\s|$)|\bI hope\b", line, maxsplit=1)[0]
    answer = line.strip().strip("*").strip().rstrip(".,;:").strip()
    return answer or None


def strip_math(answer: str) -> str:
    """`answer` without what surrounds it: whitespace, `$`/`$$`/`\\(`/`\\[` delimiters, a whole-string `\\boxed{}`
    and a final full stop."""
    text = answer.strip()
    while True:
        before = text
        for opening, closing in _MATH_DELIMITERS:
            inner = text[len(opening) : len(text) - len(closing)]
            if (
                text.startswith(opening)
                and text.endswith(closing)
                and len(text) >= len(opening) + len(closing)
                and not re.search(_INNER_DELIMITER[opening], inner)  # `$5$ and $6$` is two formulas
            ):
                text = inner.strip()
        box = _BOX.match(text)
        if box and text[box.end() : box.end() + 1] == "{":
            content = _balanced_group(text, box.end())
            if content is not None and box.end() + len(content) + 2 == len(text):
                text = content.strip()
        if text.endswith(".") and not text.endswith(".."):
            text = text[:-1].rstrip()
        if text == before:
            return text


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
    not 12 (Numina rounded it, numina.md §7.3), as are `\\sqrt{4}`, `1,2`, `52_8` and empty strings.
    """
    if answer is None or isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer
    value = exact_value(str(answer), lenient=True)
    if value is None or value.denominator != 1:
        return None
    return value.numerator


def to_competition_answer(answer: str | int | None, competition: str = "aimo1") -> int | None:
    """The integer to submit for `answer` under `COMPETITIONS[competition]`, or None when it cannot be submitted.

    - Non-integers (`12.5`, `\\sqrt2`, unparsable text) give None: they are wrong, and rounding them makes
      up votes for a value nobody computed.
    - Negatives give None in every competition. No AIMO answer is negative; a negative candidate is a sign error
      or a "-1 = no answer" sentinel, and mapping it into range (`-1 % 1000 = 999`) would turn that noise into a
      plausible vote. Numina's filter dropped negatives as well (numina.md §2).
    - Too large: AIMO-1 reduces mod 1000 into 0..999, as Numina's notebook did, since AIMO-1 answers were
      asked modulo 1000. AIMO-2 (0..999) and AIMO-3 (0..99999) give None: their problems state their own
      reduction, so an out-of-range value means the model did not apply it, and guessing one would be a guess.
    Raises InputError for an unknown competition name.
    """
    rule = COMPETITIONS.get(competition)
    if rule is None:
        raise InputError(f"unknown competition {competition!r}: expected one of {', '.join(COMPETITIONS)}")
    value = parse_integer(answer)
    return None if value is None else rule.reduce(value)


def is_equivalent(gold: str, candidate: str, *, timeout: float = 2.0) -> bool:
    """Whether `candidate` states the same answer as `gold`; see `numina_kit.answers.equivalence.is_equivalent`."""
    from numina_kit.answers.equivalence import is_equivalent as judge

    return judge(gold, candidate, timeout=timeout)


_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*")
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_INNER_DELIMITER = {"$$": r"(?<!\\)\$", "$": r"(?<!\\)\$", "\\[": r"\\[\[\]]", "\\(": r"\\[()]"}
_TEXT_BLOCK = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}(?:\s*\^\s*\{?\d\}?)?")
_NUMERIC = re.compile(r"[+-]?[\d.,]+")
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|(\\[a-zA-Z]+|\*\*|[-+*/^(){}\[\]]))")


def _balanced_group(text: str, open_index: int) -> str | None:
    """The text inside the brace group opening at `text[open_index] == "{"`; None if it never closes."""
    depth = 0
    index = open_index
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[open_index + 1 : index]
        index += 1
    return None


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
