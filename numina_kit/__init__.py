"""numina_kit: self-consistency with tool-integrated reasoning (SC-TIR) for AIMO-style competitions.

The subpackages, in the order of the algorithm: `prompts` (the text format shared by training and inference),
`models` (the `Generator` interface and its vLLM and transformers backends), `sandbox` (running model-written code),
`answers` (from a text to an answer, and each competition's rules), `sctir` (the loop, the vote, the time budget),
`data` (problem files and training-data synthesis), `eval` (scoring a model on a problem set) and `kaggle`
(serving the competition APIs).
"""

__version__ = "0.1.0"
