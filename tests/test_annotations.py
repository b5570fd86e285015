"""Reading annotation CSVs and looking up each reference's human score."""

import logging

import numpy as np
import pytest

from tiqa import annotations


def test_read_annotations_layouts_and_errors(tmp_path, caplog):
    simple = tmp_path / "a.csv"
    simple.write_text("path,score\nimgs/a.png,4.5\nb.png,2\n")
    assert annotations.read_annotations(simple) == {"imgs/a.png": 4.5, "b.png": 2.0}
    survey = tmp_path / "survey.csv"
    survey.write_text("path,score,std,n,ci95\na.png,3.5,0.5,15,0.28\n")
    assert annotations.read_annotations(survey) == {"a.png": 3.5}
    per_observer = tmp_path / "obs.csv"
    per_observer.write_text("path,alice,bob,carol\na.png,4,5,\n")
    assert annotations.read_annotations(per_observer) == {"a.png": 4.5}
    bad = tmp_path / "bad.csv"
    bad.write_text("path,score\na.png,7\n")
    with pytest.raises(ValueError, match=r"bad.csv:2.*outside 1..5"):
        annotations.read_annotations(bad)
    with caplog.at_level(logging.WARNING):
        scores = annotations.reference_scores_for(["x/imgs/a.png", "c.png"],
                                                  {"imgs/a.png": 4.5, "a.png": 4.5}, 3.0)
    np.testing.assert_allclose(scores, [4.5, 3.0])
    assert "c.png" in caplog.text and "default" in caplog.text
