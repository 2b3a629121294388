"""The collapse probe: every step traced, each variant's terms really off, and its summary
computed as the rollback computes its moving cross-entropy."""

import json
import math
from pathlib import Path

import pytest

from anonynoise.errors import AnonyNoiseError

REPO = Path(__file__).resolve().parents[2]
TINY_RECIPE = REPO / "train" / "configs" / "tiny_anonymizer.toml"
TINY_STUDY = REPO / "experiments" / "configs" / "privacy_report_tiny.toml"


def test_the_probe_traces_every_step_of_each_variant(tmp_path):
    from experiments.collapse_probe import main
    from experiments.privacy_report import main as report

    data = tmp_path / "data"
    assert report(["--config", str(TINY_STUDY), "--data", str(data), "--out",
                   str(tmp_path / "r.md"), "--real", "none", "--clean-only"]) == 0
    out = tmp_path / "collapse.md"
    assert main(["--recipe", str(TINY_RECIPE), "--data", str(data), "--seed", "0",
                 "--epochs", "2", "--variants", "recipe", "neither", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    recipe, neither = result["variants"]["recipe"], result["variants"]["neither"]
    for r in (recipe, neither):
        # one trace entry a step, numbered on across epochs; two epochs summarised
        assert [t["step"] for t in r["trace"]] == list(range(1, len(r["trace"]) + 1))
        assert [e["epoch"] for e in r["epochs"]] == [1, 2]
        assert sum(e["steps"] for e in r["epochs"]) == len(r["trace"])
        assert all(t["uncapped_event_rate_ratio"] >= 0 for t in r["trace"])
    # "neither": no Re-ID push and no frozen clean net in any step
    assert all(t["reid_weight"] == 0 for t in neither["trace"])
    assert all(math.isnan(t["loss_clean_target"]) for t in neither["trace"])
    assert neither["epochs"][0]["loss_clean_target"] is None
    # the recipe's frozen clean net is in the loss (its CE traced every step)
    assert all(not math.isnan(t["loss_clean_target"]) for t in recipe["trace"])
    text = out.read_text()
    assert "| recipe | 1 |" in text and "| neither | 2 |" in text


def test_the_summary_follows_the_rollbacks_moving_average():
    from experiments.collapse_probe import trace_summary
    from train.composite import RECENT_STEPS

    # a CE at 1 then at 5 from step 11: the moving average passes chance (2) where a
    # hand-run of the same recurrence says it does
    trace = [{"epoch": 0, "step": s, "loss_target": 1.0 if s <= 10 else 5.0,
              "loss_clean_target": float("nan"), "uncapped_event_rate_ratio": s / 10,
              "reid_weight": 0.0} for s in range(1, 101)]
    recent, first = None, None
    for t in trace:
        recent = t["loss_target"] if recent is None else \
            recent + (t["loss_target"] - recent) / RECENT_STEPS
        if first is None and recent > 2.0:
            first = t["step"]
    (epoch,) = trace_summary(trace, chance=2.0)
    assert epoch["first_over_chance"] == first and 11 < first < 100
    assert epoch["recent_end"] == pytest.approx(recent)
    assert epoch["uncapped_high"] == pytest.approx(10.0)
    assert epoch["loss_target"] == pytest.approx((10 * 1 + 90 * 5) / 100)
    assert epoch["push_on"] == 0.0


def test_missing_clean_nets_are_one_line(tmp_path):
    from experiments.collapse_probe import main

    with pytest.raises(AnonyNoiseError, match="missing"):
        main(["--recipe", str(TINY_RECIPE), "--data", str(tmp_path), "--out",
              str(tmp_path / "c.md")])
