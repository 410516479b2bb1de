"""numina_kit: self-consistency with tool-integrated reasoning (SC-TIR) for AIMO-style competitions.

The modules, in the order of the algorithm: `prompts` (the text format), `generation` and `loading` (models),
`executor` (the sandbox for model-written code), `answers` and `voting` (from texts to one integer), `sctir` and
`budget` (the loop and its time), `evaluate`, `kaggle` (serving the competition API), `data` (training data).
"""

__version__ = "0.1.0"
