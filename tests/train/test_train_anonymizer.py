"""The shipped model's recipe: its config file, its command, and the typed config reader."""

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from anonynoise.anonymizer import Anonymizer
from anonynoise.checkpoint import load_checkpoint
from train.config_file import ConfigError, from_table, merged
from train.recipe import Recipe, load_recipe, recipe_from_table

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "train" / "configs" / "default_anonymizer.toml"
TINY = REPO / "train" / "configs" / "tiny_anonymizer.toml"
SHIPPED = REPO / "anonynoise" / "models" / "default_anonymizer.pt"


def test_the_default_config_is_the_recipe_the_shipped_checkpoint_records():
    recorded = load_checkpoint(SHIPPED).training
    config = recorded["config"]  # the privacy report's StudyConfig, as it shipped the model
    ckpt = load_checkpoint(SHIPPED)
    recipe = load_recipe(DEFAULT)
    assert recipe.seed == config["data"]["seed"] and recipe.device == config["fit"]["device"]
    assert asdict(recipe.data) == {**config["data"], "cues": tuple(config["data"]["cues"])}
    assert asdict(recipe.fit) == {**config["fit"], "seed": recipe.seed}  # seeded per seed
    # the report's variant set the Re-ID weight, the clean target weight, the budget and the
    # cap of the pipeline (the recorded pipeline holds the sweep's defaults)
    variant = {k: recorded[k] for k in ("reid_weight", "clean_target_weight", "noise_budget",
                                        "reid_cap")}
    # a key the record predates holds the behaviour of its time
    assert asdict(recipe.pipeline) == {"round_trip_gradient": "identity", **config["pipeline"],
                                       **variant, "seed": recipe.seed}
    assert (recipe.clip_s, recipe.long_s, recipe.all_spans) == (
        config["clip_s"], config["long_s"], config["all_spans"])
    assert asdict(recipe.anonymizer) == {"width": config["anon_width"],
                                         "form": config["anon_form"],
                                         "identity_start": config["anon_identity_start"],
                                         "sampling": ckpt.arch.get("sampling", "stride")}
    assert recipe.filters.describe() == recorded["filters"]
    assert (recipe.filters.spec, recipe.filters.block, recipe.filters.refractory_ms) == (
        config["filters"], config["filter_block"], config["filter_refractory_ms"])
    assert (ckpt.arch["width"], ckpt.arch["form"]) == (recipe.anonymizer.width,
                                                       recipe.anonymizer.form)


def test_the_tiny_recipe_trains_a_checkpoint_the_stream_loads(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "train.train_anonymizer", "--config",
                           str(TINY), "--out", str(out), "--data", str(tmp_path / "data")],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    anon = Anonymizer(out / "anonymizer.pt", "cpu", allow_weak=True)
    assert anon.representation.window_us == 50_000 and anon.representation.bins == 5
    # it runs behind the filters it was trained behind (the runtime reads them from here)
    assert anon.filters is not None and anon.filters.spec == "warp+refractory+jitter"
    training = load_checkpoint(out / "anonymizer.pt").training
    recipe = load_recipe(TINY)
    assert recipe_from_table(training["recipe"], "recorded") == recipe  # the whole recipe
    assert training["stage"] == "train.train_anonymizer"
    assert training["reid_weight"] == 1.0 and training["clean_target_weight"] == 1.0
    log = json.loads((out / "train.json").read_text())
    assert len(log["pipeline"]) == recipe.pipeline.epochs and log["seconds"] > 0
    assert log["training_clips"] == 2 * 2 * 11  # 2 train people x 2 sessions x 11 gestures
    # no evaluation: nothing measured on test people is recorded
    assert "metrics" not in training and not any("rank1" in k for k in log)
    for name in ("clean-target.pt", "clean-reid.pt"):
        assert load_checkpoint(out / name, "classnet").arch["width"] == recipe.fit.width


@pytest.mark.parametrize("edit, message", [
    ("\n[pipeline]\nepoch = 2\n", "unknown key 'epoch'"),
    ("\n[fit]\nepochs = 'many'\n", "fit.epochs: expected an integer, got a string"),
    ("\ndevice = 1.5\n", "device: expected a string, got a number"),
    ("\n[data]\nusers = 3\ntest_users = 3\n", "test_users must be between 1"),
    ("\n[filters]\nspec = 'blur'\n", "unknown privacy filter 'blur'"),
    ("\n[fit]\nseed = 3\n", "fit: unknown key 'seed'"),  # the recipe's seed sets it
    ("\n[anonymizer]\nform = 'blur'\n", "anonymizer.form must be one of scale, mean_scale, "
                                        "suppress, got 'blur'"),
    ("\n[pipeline]\nround_trip_gradient = 'leaky'\n",
     "pipeline.round_trip_gradient must be one of identity, clamp, got 'leaky'"),
    ("\n[[oops\n", "not valid TOML"),
])
def test_a_bad_config_is_one_line_and_exit_2(tmp_path, edit, message):
    config = tmp_path / "bad.toml"
    # appended tables: TOML refuses a table defined twice, so edits go on a minimal file
    config.write_text('seed = 0\nclip_s = 0.5\nlong_s = 1.0\n' + edit)
    done = subprocess.run([sys.executable, "-m", "train.train_anonymizer", "--config",
                           str(config), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr, \
        done.stderr
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_missing_config_is_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "train.train_anonymizer", "--config",
                           str(tmp_path / "none.toml"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip() == f"train_anonymizer: error: {tmp_path / 'none.toml'}: no such " \
                                  "config file"


def test_typed_tables_convert_what_toml_cannot_say_and_refuse_the_rest():
    recipe = from_table(Recipe, {"clip_s": 3, "data": {"cues": ["body"]}}, "r")
    assert recipe.clip_s == 3.0 and isinstance(recipe.clip_s, float)  # 3 is a float here
    assert recipe.data.cues == ("body",)  # lists become the dataclass's tuples
    with pytest.raises(ConfigError, match=r"r.all_spans: expected a boolean, got an integer"):
        from_table(Recipe, {"all_spans": 1}, "r")
    with pytest.raises(ConfigError, match=r"r.fit.epochs: expected an integer, got a boolean"):
        from_table(Recipe, {"fit": {"epochs": True}}, "r")
    with pytest.raises(ConfigError, match=r"r.data: expected a table, got an integer"):
        from_table(Recipe, {"data": 3}, "r")
    assert merged({"a": {"b": 1, "c": 2}, "d": 1}, {"a": {"b": 5}}) == {
        "a": {"b": 5, "c": 2}, "d": 1}


def test_the_seed_and_device_reach_every_part_of_the_recipe():
    from dataclasses import replace

    recipe = replace(load_recipe(TINY), seed=7, device="meta")
    assert recipe.data.seed == recipe.fit.seed == recipe.pipeline.seed == 7
    assert recipe.fit.device == recipe.pipeline.device == "meta"
