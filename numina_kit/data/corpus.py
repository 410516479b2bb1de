"""Math texts for JiuZhang-style synthesis: read local files, cut them into chunks that a teacher turns into problems.

JiuZhang3.0 (Zhou et al. 2024, arXiv 2405.14365) draws its seed texts from textbooks, Wikipedia and ProofWiki
pages, web pages and arXiv papers, split on their headings and cut to 1000 characters. Here a corpus is a set of
local files (nothing is downloaded):

- `.jsonl`: one document per row, with `text` and optionally `id`, `source` and `kind` (e.g. `definition` or
  `theorem`: such texts are given every chain-of-thought stage, as the paper did for ProofWiki);
- `.txt`, `.md`, `.tex`: one document per file; a folder is read recursively, in name order.

`chunk_text` splits a document at Markdown headings (`#` ... `######`) and LaTeX `\\section`/`\\subsection`, then
packs whole paragraphs into chunks of at most `size` characters; a paragraph longer than that is cut at sentence
ends, then at spaces. Every chunk keeps its document's source and kind, and an id `<document id>#<n>`.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from numina_kit.data.jsonl import read_jsonl
from numina_kit.errors import InputError


TEXT_SUFFIXES = (".txt", ".md", ".tex")
DEFAULT_CHUNK_CHARS = 1000
_HEADING = re.compile(r"^(?=#{1,6} |\\(?:sub)*section\*?\{)", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Text:
    """A document or a chunk of one: the unit a stage prompt is written about."""

    id: str
    text: str
    source: str = ""
    kind: str = ""  # "definition", "theorem", ... (free text; see stages.choose_stages)


def read_documents(paths: Iterable[str | Path]) -> list[Text]:
    """Every document of the given files and folders; `InputError` for a missing path, a bad row or a repeated id."""
    documents: list[Text] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".jsonl", *TEXT_SUFFIXES))
        elif path.is_file():
            files = [path]
        else:
            raise InputError(f"corpus path not found: {path}")
        for file in files:
            documents += _read_file(file)
    seen: set[str] = set()
    for document in documents:
        if document.id in seen:
            raise InputError(f"corpus: document id {document.id!r} appears twice (ids must be unique to resume)")
        seen.add(document.id)
    return documents


def _read_file(path: Path) -> list[Text]:
    if path.suffix.lower() in TEXT_SUFFIXES:
        return [Text(id=path.stem, text=path.read_text(encoding="utf-8"), source=path.name)]
    if path.suffix.lower() != ".jsonl":
        raise InputError(f"{path}: unsupported corpus file (use .jsonl, {', '.join(TEXT_SUFFIXES)} or a folder)")
    documents = []
    for number, row in enumerate(read_jsonl(path), start=1):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{path}: row {number} has no 'text'")
        doc_id = str(row["id"]) if row.get("id") not in (None, "") else f"{path.stem}:{number}"
        documents.append(Text(doc_id, text, str(row.get("source") or path.name), str(row.get("kind") or "")))
    return documents


def chunk_text(text: str, size: int = DEFAULT_CHUNK_CHARS) -> list[str]:
    """`text` as chunks of at most `size` characters, split at headings first, then between paragraphs."""
    if size < 1:
        raise InputError(f"chunk size must be at least 1 character, got {size}")
    chunks: list[str] = []
    for section in _HEADING.split(text):
        current = ""
        for paragraph in (p.strip() for p in re.split(r"\n\s*\n", section)):
            for piece in _fit(paragraph, size) if paragraph else ():
                if current and len(current) + 2 + len(piece) > size:
                    chunks.append(current)
                    current = ""
                current = f"{current}\n\n{piece}" if current else piece
        if current:
            chunks.append(current)
    return chunks


def _fit(paragraph: str, size: int) -> list[str]:
    """A paragraph in pieces of at most `size` characters: whole sentences where possible, else whole words."""
    if len(paragraph) <= size:
        return [paragraph]
    pieces: list[str] = []
    current = ""
    for unit in _units(paragraph, size):
        if current and len(current) + 1 + len(unit) > size:
            pieces.append(current)
            current = ""
        current = f"{current} {unit}" if current else unit
    return [*pieces, current] if current else pieces


def _units(paragraph: str, size: int) -> Iterable[str]:
    for sentence in _SENTENCE_END.split(paragraph):
        if len(sentence) <= size:
            yield sentence
            continue
        for word in sentence.split():
            yield from (word[i : i + size] for i in range(0, len(word), size))


def chunk_documents(documents: Iterable[Text], size: int = DEFAULT_CHUNK_CHARS) -> list[Text]:
    """Every document cut by `chunk_text`; chunk `n` of document `d` has id `d#n` and `d`'s source and kind."""
    return [
        Text(f"{document.id}#{n}", chunk, document.source, document.kind)
        for document in documents
        for n, chunk in enumerate(chunk_text(document.text, size))
    ]
