"""Tests for numina_kit.data.corpus: reading JSONL and text files, and cutting documents into chunks.

Covers: chunks never exceed the size and keep every word, headings (Markdown, LaTeX) start new chunks, paragraphs are
packed whole, over-long paragraphs and words are cut; ids, sources and kinds of chunks; one-line errors for a
missing path, a row without text, a repeated id, an unknown file type.
"""

import json

import pytest

from numina_kit.data.corpus import Text, chunk_documents, chunk_text, read_documents
from numina_kit.errors import InputError


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("text", "size", "expected"),
    [
        ("short", 1000, ["short"]),
        ("one\n\ntwo\n\nthree", 9, ["one\n\ntwo", "three"]),  # paragraphs packed whole
        ("# A\nalpha\n\n# B\nbeta", 1000, ["# A\nalpha", "# B\nbeta"]),  # a heading starts a chunk
        ("intro\n\\section{Proof}\nbody", 1000, ["intro", "\\section{Proof}\nbody"]),
        ("First one. Second one. Third one.", 20, ["First one.", "Second one.", "Third one."]),
        ("abcdefghij", 4, ["abcd", "efgh", "ij"]),  # a word longer than a chunk is cut
    ],
)
def test_chunk_text(text, size, expected):
    assert chunk_text(text, size) == expected


def test_chunks_respect_the_size_and_lose_no_word():
    text = "\n\n".join(f"## Part {i}\n" + " ".join(f"word{i}_{j}." for j in range(40 + 7 * i)) for i in range(6))
    chunks = chunk_text(text, 120)
    assert all(len(chunk) <= 120 for chunk in chunks)
    assert [w for chunk in chunks for w in words(chunk)] == words(text)


def test_read_documents_and_chunk_ids(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\nSome text.")
    rows = [
        {"id": "thm1", "text": "A prime has two divisors.", "kind": "theorem", "source": "proofwiki"},
        {"text": "x"},
    ]
    (tmp_path / "docs" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    documents = read_documents([tmp_path / "docs"])
    assert documents == [
        Text("thm1", "A prime has two divisors.", "proofwiki", "theorem"),
        Text("a:2", "x", "a.jsonl", ""),
        Text("b", "# Title\nSome text.", "b.md", ""),
    ]
    chunks = chunk_documents(documents, size=1000)
    assert [c.id for c in chunks] == ["thm1#0", "a:2#0", "b#0"] and chunks[0].kind == "theorem"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.jsonl", None, "not found"),
        ("notext.jsonl", '{"id": 1, "body": "x"}\n', "row 1 has no 'text'"),
        ("dup.jsonl", '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "appears twice"),
        ("bad.jsonl", '{"text": "a"}\n{oops\n', "line 2 is not valid JSON"),
        ("data.csv", "text\nx\n", "unsupported corpus file"),
    ],
)
def test_bad_corpus_is_a_one_line_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message) as error:
        read_documents([path])
    assert "\n" not in str(error.value)


def test_chunk_size_must_be_positive():
    with pytest.raises(InputError):
        chunk_text("x", 0)
