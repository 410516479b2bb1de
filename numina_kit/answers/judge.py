"""The one answer judge: is a written answer right against a reference, under a competition's rule?

Evaluation (`numina_kit.eval.evaluate`), KTO labelling (`training/kto.py`) and data synthesis
(`numina_kit.data.synthesis`) all decide correctness here, so a sample is labelled the way it would be scored.
"""

from numina_kit.answers.competitions import competition_rule, to_competition_answer
from numina_kit.answers.equivalence import is_equivalent
from numina_kit.answers.numbers import exact_value, parse_integer


__all__ = ["judge"]


def judge(reference: str | int, raw_answer: str | int | None, rule: str, *, timeout: float = 2.0) -> bool:
    """Whether `raw_answer` states the `reference` answer under `rule` (a name in `COMPETITIONS`).

    - Integer rules: both sides through `to_competition_answer`, equal and valid (so AIMO-1 scores AMC's `8178`
      against 178, and under AIMO-2/3 an out-of-range reference cannot be matched). `raw_answer` may be the written
      text or the integer already reduced.
    - "general": when the reference is an integer and the answer a plain number, their exact values are compared
      (`12.0000001` is not 12, though math-verify's rounding would accept it); otherwise `is_equivalent`, which
      returns within `timeout` seconds.
    An empty or missing answer is never right. Raises InputError for an unknown rule.
    """
    if raw_answer is None or not str(raw_answer).strip():
        return False
    if competition_rule(rule).integer:
        gold = to_competition_answer(reference, rule)
        return gold is not None and to_competition_answer(raw_answer, rule) == gold
    gold = parse_integer(str(reference))
    value = exact_value(str(raw_answer), lenient=True)
    if gold is not None and value is not None:
        return value == gold
    return is_equivalent(str(reference), str(raw_answer), timeout=timeout)
