"""Kaggle: the `predict` endpoint that never raises, serving AIMO-1/2/3's APIs, local gateways, and packaging."""

from numina_kit.kaggle.predict import AnswerRecord, make_predict, make_solver, records_summary, save_records
from numina_kit.kaggle.serving import run_local, serve


__all__ = ["AnswerRecord", "make_predict", "make_solver", "records_summary", "run_local", "save_records", "serve"]
