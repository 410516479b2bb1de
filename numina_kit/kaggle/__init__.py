"""Kaggle: the `predict` endpoint that never raises, serving AIMO-1/2/3's APIs, local gateways, and packaging."""

from numina_kit.kaggle.serving import (
    kaggle_competition,
    make_predict,
    make_solver,
    records_summary,
    save_records,
    serve,
)


__all__ = ["kaggle_competition", "make_predict", "make_solver", "records_summary", "save_records", "serve"]
