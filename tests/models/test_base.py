"""numina_kit.models.base: vLLM's stop-string rule (`match_stop`: the earliest completion wins, ties in list order)
and the one-line errors for bad sampling parameters."""

import pytest

from numina_kit.errors import InputError
from numina_kit.models.base import SamplingParams, match_stop


@pytest.mark.parametrize(
    ("text", "previous", "stops", "expected"),
    [
        ("abc```output\nxy", 10, ("```output\n",), ("```output\n", 13)),
        ("abc```output\nxy", 14, ("```output\n",), None),  # completed before the new characters: already handled
        ("a STOP b END", 5, ("END", "STOP"), ("STOP", 6)),  # the one that completes first wins, not list order
        ("xAB", 1, ("AB", "xAB"), ("AB", 3)),  # both complete at the same character: list order breaks the tie
        ("a END", 0, ("END", "END"), ("END", 5)),
        ("no stop here", 0, ("x!",), None),
    ],
)
def test_match_stop(text: str, previous: int, stops: tuple, expected: tuple | None) -> None:
    assert match_stop(text, previous, stops) == expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_p": 0}, "top_p must be in"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"stop": ("",)}, "stop strings must not be empty"),
    ],
)
def test_sampling_params_reject_bad_values(bad: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SamplingParams(**bad)
