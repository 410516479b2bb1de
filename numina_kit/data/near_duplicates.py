"""Near-duplicate removal: keep the first of every group of texts that share most of their word n-grams.

A synthesis model sampling millions of problems writes the same problem many times with small changes; training on
the copies wastes compute and overweights them. Texts are compared by the Jaccard similarity of their word 5-gram
shingles (the tokens of `numina_kit.data.decontamination.tokenize`), estimated with MinHash and found with locality
sensitive hashing (`datasketch`, a well-kept implementation), so each check costs the same however many texts were
kept. Exact copies (same tokens) are caught first, by hash. The hash functions are seeded, so a run is reproducible.
"""

from numina_kit.data.decontamination import ngrams, tokenize


class NearDuplicates:
    """The texts kept so far; `add` keeps a text unless it is a near duplicate of one kept before."""

    def __init__(self, threshold: float = 0.8, *, num_perm: int = 128, ngram: int = 5, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._exact: set[int] = set()

    def add(self, key: str, text: str) -> bool:
        """Keep `text` under `key` and return True, or return False (keeping nothing) when it is a near duplicate."""
        from datasketch import MinHash

        tokens = tokenize(text)
        exact = hash(tuple(tokens))
        if exact in self._exact:
            return False
        signature = MinHash(num_perm=self.num_perm, seed=self.seed)
        signature.update_batch([" ".join(gram).encode() for gram in ngrams(tokens, self.ngram)] or [b""])
        if self._lsh.query(signature):
            return False
        self._lsh.insert(key, signature)
        self._exact.add(exact)
        return True

    def __len__(self) -> int:
        return len(self._exact)
