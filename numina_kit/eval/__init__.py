"""Evaluation: SC-TIR over a problem set with reference answers, and its report (`python -m numina_kit evaluate`)."""
