"""The staged ``build_schedule`` decides exactly what the one-function original decided.

``schedule_fingerprints.json`` holds digests computed by the original planner (see
``schedule_fingerprints.py``): every buffer's name, role, shape, dtype, lifetime, view and
offset, the schedule's tables and the memory plan's figures, for fixed models and settings.
"""
from __future__ import annotations

import json

import pytest

import nexec
from tests.planner.schedule_fingerprints import FIXTURE, _as_json, cases, digest, fingerprint

_SAVED = json.loads(FIXTURE.read_text())
_CASES = cases(_SAVED["recipes"])


def test_every_saved_fingerprint_has_a_case():
    assert sorted(name for name, _, _ in _CASES) == sorted(_SAVED["fingerprints"])


@pytest.mark.parametrize("name, make, setting", _CASES, ids=[c[0] for c in _CASES])
def test_schedule_matches_the_original_planner(name, make, setting):
    nexec.clear_session()
    nexec.set_random_seed(7)
    fp = _as_json(fingerprint(make(), *setting))
    assert fp["arena_records"] is True  # the memory plan's rows are the schedule's buffers
    assert digest(fp) == _SAVED["fingerprints"][name], (
        f"{name}: the schedule differs from the original planner's; diff the output of "
        "`python -m tests.planner.schedule_fingerprints --full PATH` at both commits")
