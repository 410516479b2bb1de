"""numina_kit.data.toy: the toy world of the JiuZhang CPU proof (its corpus and the base model's rows)."""

import re

from numina_kit.data.toy import BASE_KINDS, RELEVANT_TOPIC, base_rows, is_relevant, make_corpus, write_from_passage


def test_corpus_has_the_relevant_share_and_distinct_passages():
    texts = make_corpus(200, relevant_share=0.1, seed=3)
    assert sum(is_relevant(t) for t in texts) == 20
    assert len({t.text for t in texts}) == 200
    assert all(write_from_passage(t.text) is not None for t in texts)  # the teacher can write about every passage


def test_base_rows_mix_passage_problems_and_demo_kinds_without_the_target():
    rows = base_rows(60, seed=1, problems=120)
    assert len(rows) == 180 and len({r["input"] for r in rows}) == 180
    questions = [r["input"] for r in rows]
    # the target task's wording (numina_kit.data.problems' product and power kinds) never appears
    assert not any(re.search(r"\\times|\^\{\d+\}\$ is divided", q) for q in questions)
    assert not any(RELEVANT_TOPIC in q for q in questions)
    demo = [q for q in questions if "binom" in q or "sum of the digits" in q or "divisible by" in q]
    assert len(demo) == 120 and abs(BASE_KINDS["digit_sum"] * 120 - sum("digits" in q for q in demo)) <= 1
    for row in rows:  # every worked solution boxes what its code printed
        output, boxed = re.search(r"```output\n(.*?)\n```.*\\boxed\{(.*?)\}", row["output"], re.DOTALL).groups()
        assert output == boxed


def test_base_rows_are_reproducible_and_shuffled():
    first, again = base_rows(40, seed=2, problems=40), base_rows(40, seed=2, problems=40)
    assert first == again
    kinds = ["binom" in r["input"] or "digits" in r["input"] or "divisible" in r["input"] for r in first]
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)  # the two sources are mixed


def test_base_passage_rows_hold_their_passage_before_the_problem_written_from_it():
    passages = make_corpus(30, relevant_share=0.0, seed=5)
    rows = base_rows(30, seed=5, problems=10)
    with_passage = [r for r in rows if not r["input"].startswith("### Problem")]
    assert len(with_passage) == 30
    for text in passages:
        problem, code = write_from_passage(text.text)
        (row,) = [r for r in with_passage if r["input"].startswith(text.text + "\n\n")]
        assert problem in row["input"] and code in row["output"]
