"""The privacy study's evaluations, one job at a time: what experiments.privacy_report runs.

    study_clean       a seed's clean gesture and Re-ID nets (the baseline), saved for the rest
    study_variant     one anonymizer of the sweep on one seed (trained by train.recipe), then
                      the post-trained gesture net, fresh attackers, temporal averaging; its
                      row rewritten step by step
    study_checkpoint  the same evaluation of a given anonymizer checkpoint (no training of it)
    study_averaging   temporal averaging alone, for anonymizers a stopped run saved
    collect           a seed's results from what its jobs wrote

Everything works on the stream's 50 ms windows of the synthetic benchmark, anonymized per
window with fresh noise through the events round trip, and judged on the clips a consumer
re-bins from them (train.clips).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from anonynoise.checkpoint import load_checkpoint, load_net, save_checkpoint
from anonynoise.models import ANONYMIZER_KINDS, ClassNet
from anonynoise.models.denoise import DenoiseNet
from experiments.report import write_json
from train.classify import fit_classnet, reid_accuracy, target_accuracy
from train.clips import anonymize_windows, clean_clips, compose_clips, study_generators
from train.config_file import ConfigError, from_table, merged, read_toml
from train.datasets.dvsgesture import scan
from train.recipe import (BINS, FIXED, GESTURES, WINDOW_MS, Recipe, anonymizer_record,
                          cached_windows, filter_seed, filter_tag, representation,
                          train_anonymizer, train_clean_nets, training_data)

log = logging.getLogger(__name__)
# the kinds of fresh attacker, the strongest seen first (a run stopped early keeps those)
ATTACKERS = [("from clean", "clean"), ("from adversary", "adversary"), ("scratch", None)]
CHECKPOINT = "checkpoint"  # the row key of a given checkpoint (no variant trained)


@dataclass
class StudyConfig:
    """A privacy study: the recipe, trained on every seed for every variant of the sweep
    (or a given checkpoint evaluated), and how its attackers are trained."""
    recipe: Recipe = field(default_factory=Recipe)
    seeds: tuple[int, ...] = (0, 1)
    # the sweep: every Re-ID weight with every clean target weight (and budget, and cap);
    # empty budgets / caps: the recipe's pipeline's for every variant (keys without them)
    reid_weights: tuple[float, ...] = (0.3, 1.0)
    clean_target_weights: tuple[float, ...] = (0.0, 1.0)
    noise_budgets: tuple[float, ...] = ()
    reid_caps: tuple[float, ...] = ()
    full_table: bool = True     # every variant gets every attacker (else the first only)
    # a probe, not a report: every variant gets one attacker (from the clean Re-ID net, with a
    # denoiser) and no temporal averaging; at 48x48 on the CPU about 21 of a variant's 35
    # minutes (the pipeline runs either way)
    quick: bool = False
    draws: int = 2              # anonymized copies of the training set for the attackers
    denoise_width: int = 32     # the reference's DnCNN is 128 wide and 15 deep
    denoise_depth: int = 5

    def check(self) -> "StudyConfig":
        self.recipe.check()
        if not self.seeds or not self.reid_weights or not self.clean_target_weights:
            raise ConfigError("seeds, reid_weights and clean_target_weights must not be empty")
        if self.denoise_width < 1 or self.denoise_depth < 2 or self.draws < 1:
            raise ConfigError("denoise_width and draws must be at least 1 and denoise_depth "
                              "at least 2")
        if self.recipe.pipeline.reid_push == "confusion" and self.reid_caps:
            raise ConfigError("reid_caps cap the triplet push; the confusion push stops at "
                              "chance by itself")
        return self

    @property
    def variants(self) -> list["Variant"]:
        return [Variant(w, c, b, cap) for cap in (self.reid_caps or (None,))
                for b in (self.noise_budgets or (None,))
                for c in self.clean_target_weights for w in self.reid_weights]

    def budget_of(self, variant: "Variant") -> float | None:
        return self.recipe.pipeline.noise_budget if variant.noise_budget is None \
            else variant.noise_budget

    def cap_of(self, variant: "Variant") -> float | None:
        return self.recipe.pipeline.reid_cap if variant.reid_cap is None else variant.reid_cap

    def every_attacker(self, variant: "Variant") -> bool:
        """Whether this variant gets every attacker and temporal averaging."""
        return not self.quick and (self.full_table or variant == self.variants[0])

    def recipe_for(self, seed: int, variant: "Variant | None" = None) -> Recipe:
        """The recipe on one seed, with a variant's weights, budget and cap."""
        recipe = replace(self.recipe, seed=seed)
        if variant is None:
            return recipe
        return replace(recipe, pipeline=replace(
            recipe.pipeline, reid_weight=variant.reid_weight,
            clean_target_weight=variant.clean_target_weight,
            noise_budget=self.budget_of(variant), reid_cap=self.cap_of(variant)))


def study_table(path: Path) -> dict:
    """A study's TOML file as one table: its `recipe_file` (relative to it) read, with the
    file's own [recipe] table on top."""
    table = read_toml(path)
    recipe = table.pop("recipe", {})
    if "recipe_file" in table:
        base = read_toml(path.parent / table.pop("recipe_file"))
        recipe = merged(base, recipe)
    return {**table, "recipe": recipe}


def study_config(table: dict, where: str) -> StudyConfig:
    """A checked StudyConfig from a study_table."""
    return from_table(StudyConfig, table, where, FIXED).check()


@torch.no_grad()
def anonymized_spans(anon, windows: np.ndarray, spans: list[int], clip_bins: int = BINS,
                     batch: int = 8, device: str = "cpu") -> dict[int, np.ndarray]:
    """One anonymization pass over the windows (fresh noise each), re-binned into clips of
    the first `span` windows for every span, scaled to the count level of the first span."""
    anon.eval()
    generators = study_generators(device)
    out: dict[int, list] = {s: [] for s in spans}
    for k in range(0, len(windows), batch):
        x = anonymize_windows(anon, torch.from_numpy(np.array(windows[k:k + batch]))
                              .to(device).float(), generator=generators)
        for s in spans:
            out[s].append((compose_clips(x[:, :s], clip_bins) * (spans[0] / s)).cpu())
    return {s: torch.cat(v).numpy() for s, v in out.items()}


def clean_spans(windows: np.ndarray, spans: list[int]) -> dict[int, np.ndarray]:
    return {s: clean_clips(windows[:, :s]) * (spans[0] / s) for s in spans}


def _mass(x: np.ndarray) -> float:
    return float(np.clip(x, 0, None).sum())


@dataclass(frozen=True)
class Variant:
    """One anonymizer training of the sweep: the Re-ID term's weight, the frozen clean
    target net's weight in the anonymizer's loss and, when the sweep has several, the noise
    budget and the Re-ID term's cap (None: the pipeline config's)."""
    reid_weight: float
    clean_target_weight: float = 0.0
    noise_budget: float | None = None
    reid_cap: float | None = None

    @property
    def key(self) -> str:  # results.json's key (a bare weight, as before the sweep had two)
        key = str(float(self.reid_weight))
        if self.clean_target_weight:
            key += f"+clean{float(self.clean_target_weight)}"
        if self.noise_budget is not None:
            key += f"+budget{float(self.noise_budget)}"
        if self.reid_cap is not None:
            key += f"+cap{float(self.reid_cap)}"
        return key

    @property
    def label(self) -> str:
        return f"Re-ID weight {self.reid_weight:g}" + (
            f", clean target weight {self.clean_target_weight:g}"
            if self.clean_target_weight else "") + (
            f", noise budget {self.noise_budget:g}" if self.noise_budget is not None else "") + (
            f", Re-ID cap {self.reid_cap:g}" if self.reid_cap is not None else "")

    @property
    def order(self) -> tuple[float, float, float, float]:  # the report's row order
        return (self.reid_weight, self.clean_target_weight,
                -1.0 if self.noise_budget is None else self.noise_budget,
                -1.0 if self.reid_cap is None else self.reid_cap)

    @classmethod
    def from_key(cls, key: str) -> "Variant":
        rest, _, cap = key.partition("+cap")
        rest, _, b = rest.partition("+budget")
        w, _, c = rest.partition("+clean")
        return cls(float(w), float(c) if c else 0.0, float(b) if b else None,
                   float(cap) if cap else None)


def seed_data(config: StudyConfig, seed: int, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's windows and labels (train.recipe.training_data with `draws` filtered
    copies) and its test split: test_w the clean windows, in_test what the anonymizer gets
    (the filtered windows, with filters), and the Re-ID protocol's queries."""
    recipe = config.recipe_for(seed)
    d = training_data(recipe, data_dir, seed_dir, config.draws)
    root, filters = d["root"], recipe.filter_config
    test_w = cached_windows(root, "test", recipe, seed_dir / "test-windows.npy")
    in_test = test_w if filters is None else cached_windows(
        root, "test", recipe, seed_dir / f"test-windows-{filter_tag(filters)}.npy", filters,
        filter_seed(seed, "test", 0, config.draws))
    rec_test = scan(root, "test")
    first_session = {}
    for r in rec_test:
        first_session.setdefault(r.user, r.lighting)
    return {**d, "test_w": test_w, "in_test": in_test,
            "t_test": np.array([r.target for r in rec_test]),
            "u_test": np.array([r.user for r in rec_test]),
            "query": np.array([r.lighting == first_session[r.user] for r in rec_test]),
            "files": np.arange(len(rec_test))}


def _spans(config: StudyConfig) -> list[int]:
    n_clip = config.recipe.clip_windows
    spans = [int(round(s * 1000 / WINDOW_MS)) for s in range(1, int(config.recipe.long_s) + 1)]
    return [n_clip] + [s for s in spans if s != n_clip]


def _reid(d: dict, net, x, device, front=None) -> dict:
    return reid_accuracy(net, x, d["u_test"], d["files"], d["t_test"], d["query"], device,
                         front=front).as_dict()


def study_clean(config: StudyConfig, seed: int, data_dir: Path, seed_dir: Path) -> dict:
    """A seed's baseline: clean target and Re-ID nets (train.recipe, saved for the variants'
    jobs) and their numbers (seed_dir/clean.json)."""
    recipe = config.recipe_for(seed)
    device = recipe.device
    d = seed_data(config, seed, data_dir, seed_dir)
    target_clean, reid_clean = train_clean_nets(recipe, d)
    clean_test = clean_clips(d["test_w"][:, :recipe.clip_windows])
    clean = {"target_top1": target_accuracy(target_clean, clean_test, d["t_test"], device),
             **_reid(d, reid_clean, clean_test, device)}
    clean["averaging"] = {str(s): _reid(d, reid_clean, c, device)["rank1"]
                          for s, c in clean_spans(d["test_w"], _spans(config)).items()}
    for net, name in ((target_clean, "target"), (reid_clean, "reid")):
        save_checkpoint(seed_dir / f"clean-{name}.pt", net, representation(),
                        {"stage": "privacy_report clean baseline", "seed": seed,
                         "trained_on": "synthetic people only", "metrics": clean})
    write_json(seed_dir / "clean.json", clean)
    log.info("seed %d clean: %s", seed, json.dumps(clean))
    return clean


def load_clean_nets(seed_dir: Path, device: str) -> tuple[ClassNet, ClassNet]:
    """A seed's saved clean gesture and Re-ID nets (study_clean's)."""
    return (load_net(seed_dir / "clean-target.pt", "classnet", device=device)[0],
            load_net(seed_dir / "clean-reid.pt", "classnet", device=device)[0])


def study_variant(config: StudyConfig, seed: int, data_dir: Path, seed_dir: Path,
                  variant: Variant, main: bool = True) -> dict:
    """One anonymizer of the sweep on one seed, trained by train.recipe from that seed's
    clean nets, then evaluated (_evaluate). The row is rewritten to seed_dir/rows/<key>.json
    after every step, so a run stopped at a time limit keeps what it finished."""
    recipe = config.recipe_for(seed, variant)
    device = recipe.device
    d = seed_data(config, seed, data_dir, seed_dir)
    target_clean, reid_clean = load_clean_nets(seed_dir, device)
    anon, target_net, adversary, history = train_anonymizer(recipe, d, target_clean,
                                                            reid_clean)
    n_clip = recipe.clip_windows
    test_spans = anonymized_spans(anon, d["in_test"], _spans(config) if main else [n_clip],
                                  device=device)
    anon_test = test_spans[n_clip]
    row = {"variant": asdict(variant), "pipeline": history[-1],
           # epochs that ended above chance and were undone (CompositeConfig.rollback)
           "rolled_back_epochs": [h["epoch"] + 1 for h in history if h.get("rolled_back")],
           "target_top1_pipeline": target_accuracy(target_net, anon_test, d["t_test"], device),
           "adversary": _reid(d, adversary, anon_test, device)}
    path = seed_dir / f"anonymizer-{variant.key}.pt"
    save_checkpoint(path, anon, representation(), anonymizer_record(
        recipe, "experiments.privacy_report", metrics={
            "target_top1_pipeline": row["target_top1_pipeline"],
            "adversary_rank1": row["adversary"]["rank1"]}))
    log.info("saved %s", path)
    kinds = ATTACKERS if main else [("from clean", "clean")]
    return _evaluate(config, recipe, d, anon, test_spans, seed_dir / "rows" / f"{variant.key}.json",
                     row, target_clean, target_net, {"clean": reid_clean, "adversary": adversary},
                     kinds, main, f"seed {seed} {variant.label}")


def study_checkpoint(config: StudyConfig, seed: int, data_dir: Path, seed_dir: Path,
                     checkpoint: Path) -> dict:
    """A given anonymizer checkpoint on one seed, from that seed's clean nets: no training
    of the anonymizer, every fresh attacker that needs no pipeline (from the clean Re-ID net
    and from scratch), the target net post-trained from the clean one, temporal averaging
    (the row: seed_dir/rows/checkpoint.json)."""
    recipe = config.recipe_for(seed)
    device = recipe.device
    d = seed_data(config, seed, data_dir, seed_dir)
    target_clean, reid_clean = load_clean_nets(seed_dir, device)
    anon = load_checkpoint(checkpoint, ANONYMIZER_KINDS).build(device)
    test_spans = anonymized_spans(anon, d["in_test"], _spans(config), device=device)
    kinds = [("from clean", "clean")] if config.quick else \
        [(name, init) for name, init in ATTACKERS if init != "adversary"]
    return _evaluate(config, recipe, d, anon, test_spans, seed_dir / "rows" / f"{CHECKPOINT}.json",
                     {}, target_clean, target_clean, {"clean": reid_clean}, kinds,
                     not config.quick, f"seed {seed} {checkpoint.name}")


def _evaluate(config: StudyConfig, recipe: Recipe, d: dict, anon, test_spans: dict,
              row_file: Path, row: dict, target_clean: ClassNet, target_init: ClassNet,
              inits: dict, kinds: list, main: bool, tag: str) -> dict:
    """What fresh nets learn from an anonymizer's output: the target net post-trained from
    `target_init` (without, then with a denoiser), the fresh attackers of `kinds` (each with
    and without a denoiser where `main`, else with one), and, where `main`, temporal
    averaging; the row rewritten to row_file after every step."""
    device, fit = recipe.device, recipe.fit
    anon_test = test_spans[recipe.clip_windows]
    clean_train = clean_clips(d["clip_w"])
    clean_test = clean_clips(d["test_w"][:, :recipe.clip_windows])
    row.update({"event_rate_ratio": _mass(anon_test) / _mass(clean_test),
                "target_top1_clean_net": target_accuracy(target_clean, anon_test, d["t_test"],
                                                         device),
                "attackers": {}})
    row_file.parent.mkdir(parents=True, exist_ok=True)
    write_json(row_file, row)
    draws = _training_draws(anon, d, config, recipe)
    # the reference's post-training of the target: on anonymized clips, as long as every
    # other ClassNet; what a consumer would deploy (with a denoiser in front too, after the
    # attackers: a run stopped at a time limit keeps those)
    row["target_top1_post"] = post_train_target(config, recipe, d, draws, clean_train,
                                                anon_test, target_init, denoised=False)
    write_json(row_file, row)
    log.info("%s target post-trained: %.3f", tag, row["target_top1_post"])
    attacker_clip = None
    for name, init in kinds:
        for with_denoiser in ((True, False) if main else (True,)):
            label = name + (" + denoiser" if with_denoiser else "")
            denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth) \
                if with_denoiser else None
            out = fit_classnet(draws, d["id_clip"], len(d["users"]), True, fit,
                               init=inits.get(init), denoiser=denoiser, clean=clean_train)
            net, front = out if with_denoiser else (out, None)
            row["attackers"][label] = _reid(d, net, anon_test, device, front)
            if label == "from clean":
                attacker_clip = net
            write_json(row_file, row)
            log.info("%s %s: %s", tag, label, json.dumps(row["attackers"][label]))
    row["target_top1_post_denoised"] = post_train_target(config, recipe, d, draws, clean_train,
                                                         anon_test, target_init, denoised=True)
    write_json(row_file, row)
    log.info("%s target post-trained with a denoiser: %.3f", tag,
             row["target_top1_post_denoised"])
    if main:
        row["averaging"] = _temporal_averaging(config, recipe, d, anon, inits["clean"],
                                               attacker_clip, test_spans)
        write_json(row_file, row)
    log.info("%s: %s", tag, json.dumps(row))
    return row


def _anonymized_draws(anon, copies: list[np.ndarray], n_windows: int, config: StudyConfig,
                      device: str) -> list[np.ndarray]:
    """config.draws anonymized clips of `n_windows` windows of the training set (fresh noise
    each; draw k from copies[k] in turn: with filters, each its own filtered copy)."""
    return [anonymized_spans(anon, copies[k % len(copies)], [n_windows],
                             device=device)[n_windows] for k in range(config.draws)]


def _training_draws(anon, d: dict, config: StudyConfig, recipe: Recipe) -> list[np.ndarray]:
    """The anonymized training clips the attackers and post-training learn from."""
    return _anonymized_draws(anon, d["in_clip"], recipe.clip_windows, config, recipe.device)


def post_train_target(config: StudyConfig, recipe: Recipe, d: dict, draws: list,
                      clean_train: np.ndarray, anon_test: np.ndarray, init: ClassNet,
                      denoised: bool) -> float:
    """Gesture top-1 on the anonymized test clips of a target net trained on anonymized
    clips from `init`, with a denoiser in front (trained to restore the clean clip) or not."""
    fit = recipe.fit
    if not denoised:
        net = fit_classnet(draws, d["t_clip"], GESTURES, False, fit, init=init)
        return target_accuracy(net, anon_test, d["t_test"], fit.device)
    denoiser = DenoiseNet(2 * BINS, config.denoise_width, config.denoise_depth)
    net, front = fit_classnet(draws, d["t_clip"], GESTURES, False, fit, init=init,
                              denoiser=denoiser, clean=clean_train)
    return target_accuracy(net, anon_test, d["t_test"], fit.device, front=front)


def _temporal_averaging(config: StudyConfig, recipe: Recipe, d: dict, anon, reid_clean,
                        attacker_clip, test_spans: dict) -> dict:
    """The noise is fresh in every window, so re-binning longer spans averages it out:
    rank-1 over 1 to 6 s of stream of the 3 s attacker, and of one trained on 6 s."""
    device, fit = recipe.device, recipe.fit
    out = {f"attacker {recipe.clip_s:g} s": {
        str(s): _reid(d, attacker_clip, c, device)["rank1"] for s, c in test_spans.items()}}
    long_draws = _anonymized_draws(anon, d["in_train"], recipe.long_windows, config, device)
    attacker_long = fit_classnet(long_draws, d["id_train"], len(d["users"]), True, fit,
                                 init=reid_clean)
    out[f"attacker {recipe.long_s:g} s"] = {
        str(s): _reid(d, attacker_long, c, device)["rank1"] for s, c in test_spans.items()}
    return out


def study_averaging(config: StudyConfig, seed: int, data_dir: Path, seed_dir: Path,
                    keys: list[str], checkpoint: Path | None = None) -> None:
    """Temporal averaging alone, for anonymizers a stopped run saved (seed_dir/anonymizer-
    <key>.pt, or the given checkpoint): the clean Re-ID net and the 3 s attacker from it are
    trained again (same recipe, new noise draws); written to seed_dir/rows/<key>.averaging.json,
    which collect merges into the row."""
    recipe = config.recipe_for(seed)
    d = seed_data(config, seed, data_dir, seed_dir)
    reid_clean = fit_classnet(clean_clips(d["clip_w"]), d["id_clip"], len(d["users"]), True,
                              recipe.fit)
    for key in keys:
        path = checkpoint if key == CHECKPOINT else seed_dir / f"anonymizer-{key}.pt"
        anon = load_checkpoint(path, ANONYMIZER_KINDS).build(recipe.device)
        test_spans = anonymized_spans(anon, d["in_test"], _spans(config), device=recipe.device)
        draws = _training_draws(anon, d, config, recipe)
        attacker_clip = fit_classnet(draws, d["id_clip"], len(d["users"]), True, recipe.fit,
                                     init=reid_clean)
        averaging = _temporal_averaging(config, recipe, d, anon, reid_clean, attacker_clip,
                                        test_spans)
        write_json(seed_dir / "rows" / f"{key}.averaging.json", averaging)
        log.info("seed %d %s averaging: %s", seed, key, json.dumps(averaging))


def collect(seed_dir: Path, seed: int) -> dict | None:
    """A seed's results from what its jobs wrote (None before its clean nets are done)."""
    if not (seed_dir / "clean.json").is_file():
        return None
    files = sorted((f for f in (seed_dir / "rows").glob("*.json")
                    if not f.name.endswith(".averaging.json")),
                   key=lambda f: (0.0,) if f.stem == CHECKPOINT else Variant.from_key(f.stem).order)
    rows = {f.stem: json.loads(f.read_text()) for f in files}
    for key, row in rows.items():
        separate = seed_dir / "rows" / f"{key}.averaging.json"
        if "averaging" not in row and separate.is_file():
            row["averaging"] = json.loads(separate.read_text())
    return {"seed": seed, "clean": json.loads((seed_dir / "clean.json").read_text()),
            "weights": rows}
