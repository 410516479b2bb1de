"""Extraction: from a model's solution text to the answer it states, as a string.

`extract_answer` reads the last complete `\\boxed{}` (else an "answer is" phrase) from the whole text, not only its
tail as Numina's AIMO-1 notebook did (it read the last 100 characters; github.com/project-numina/aimo-progress-prize,
`kaggle-solution.ipynb`). `strip_math` removes what surrounds an answer (`$...$`, a whole-string `\\boxed{}`).
Turning the string into a number is `numina_kit.answers.numbers`; judging it is `numina_kit.answers.judge`.
"""

import re


__all__ = ["extract_answer", "extract_boxed", "strip_math"]

_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*")
_ANSWER_PHRASE = re.compile(r"\banswer\s*(?:is\b\s*:?|:)", re.IGNORECASE)
_MATH_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))
_INNER_DELIMITER = {"$$": r"(?<!\\)\$", "$": r"(?<!\\)\$", "\\[": r"\\[\[\]]", "\\(": r"\\[()]"}


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
    its answer writes a new problem and solves it. The whole text is read, not only its tail.
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
