"""The reference's README commands, with --dataset synth and tiny settings, end to end."""

import json
import os
import subprocess
import sys

import pytest
import torch

from anonynoise.checkpoint import load_checkpoint
from anonynoise.cli_support import run
from anonynoise.synth import DatasetConfig, generate_dataset
from train import preposttrain_networks, train_pipeline

TINY = ["--network", "resnet18", "--batch_size", "8", "--epochs", "1", "--num_workers", "0",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    return generate_dataset(root, DatasetConfig(users=4, test_users=2, reps=2, size=32,
                                                duration_s=0.5), workers=1)


def rows(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def pre(synth, out, *extra):
    return run(preposttrain_networks.main, ["--dataset", "synth", "--dataset_path", str(synth),
                                            "--out", str(out), *TINY, *extra])


def pipe(synth, out, *extra):
    return run(train_pipeline.main, ["--dataset", "synth", "--dataset_path", str(synth),
                                     "--out", str(out), *TINY, *extra])


def test_readme_chain_pretrain_pipeline_posttrain_evaluate(synth, tmp_path, capsys):
    t, i, p = tmp_path / "target", tmp_path / "id", tmp_path / "pipe"
    assert pre(synth, t, "--ename", "pre_t", "--store_weight", "--lr0", "1e-4",
               "--anno_type", "target") == 0
    assert pre(synth, i, "--ename", "pre_i", "--store_weight", "--lr0", "1e-4",
               "--anno_type", "id") == 0
    target = load_checkpoint(t / "classnet_best.pt", "classnet")
    assert target.arch["n_classes"] == 11 and target.training["stage"] == "pre-target"
    assert load_checkpoint(i / "classnet_best.pt").arch["n_classes"] == 2  # training people
    assert "val_target_top1" in rows(t)[0] and "reid_rank1" in rows(i)[0]

    assert pipe(synth, p, "--ename", "pipe", "--lr0", "5e-4", "--lr0_helper", "1e-3",
                "--target_weights", str(t / "classnet_best.pt"),
                "--id_weights", str(i / "classnet_best.pt")) == 0
    anon = load_checkpoint(p / "anonymizer.pt", ("paper_anon", "light_anon"))
    assert anon.kind == "paper_anon" and anon.representation.width is None
    assert anon.representation.window_us is None  # whole samples, like the reference
    row = rows(p)[0]
    for key in ("val_target_top1", "reid_rank1", "reid_mAP", "val_event_rate_ratio",
                "loss_anon", "noise_scale"):
        assert key in row

    for denoise in ([], ["--denoisenet", "--denoise_width", "8", "--denoise_depth", "3"]):
        for anno, weights in (("id", "idnet.pt"), ("target", "targetnet.pt")):
            out = tmp_path / f"post_{anno}_{len(denoise)}"
            assert pre(synth, out, "--anno_type", anno, "--prepostmode", "post",
                       "--anon_weights", str(p / "anonymizer.pt"),
                       "--class_weights", str(p / weights), *denoise) == 0
            assert (out / "classnet_last.pt").is_file()
            assert (out / "denoise_last.pt").is_file() == bool(denoise)
            assert rows(out)[0]["stage"] == f"post-{anno}"

    capsys.readouterr()
    assert pre(synth, tmp_path / "eval", "--anno_type", "target", "--val_only",
               "--class_weights", str(t / "classnet_best.pt")) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= printed["val_target_top1"] <= 1.0


def test_reference_state_dicts_are_accepted(synth, tmp_path):
    from anonynoise.models import ClassNet, PaperAnonNet

    classnet = ClassNet("resnet18", 11, 10)
    torch.save(classnet.state_dict(), tmp_path / "target.pth")  # a bare state dict
    pipeline = {f"anonnet.{k}": v for k, v in PaperAnonNet(10).state_dict().items()}
    pipeline.update({f"targetnet.{k}": v for k, v in classnet.state_dict().items()})
    torch.save(pipeline, tmp_path / "pipeline.pth")  # a whole PipelineNet
    out = tmp_path / "post"
    assert pre(synth, out, "--anno_type", "target", "--prepostmode", "post",
               "--anon_weights", str(tmp_path / "pipeline.pth"),
               "--class_weights", str(tmp_path / "pipeline.pth")) == 0
    assert (out / "classnet_last.pt").is_file()
    assert pre(synth, tmp_path / "v", "--anno_type", "target", "--val_only",
               "--class_weights", str(tmp_path / "target.pth")) == 0


def test_light_anonymizer_on_windows_through_the_event_domain_with_a_budget(synth, tmp_path):
    out = tmp_path / "light"
    assert pipe(synth, out, "--anonnet", "light", "--window_ms", "100", "--event_domain",
                "--noise_budget", "3", "--reid_weight", "3", "--epochs", "2") == 0
    anon = load_checkpoint(out / "anonymizer.pt")
    assert anon.kind == "light_anon" and anon.representation.window_us == 100_000
    assert anon.training["args"]["reid_weight"] == 3.0
    assert len(rows(out)) == 2


def test_resume_continues_where_a_run_stopped(synth, tmp_path):
    out = tmp_path / "r"
    assert pre(synth, out, "--anno_type", "id", "--epochs", "2") == 0
    first = rows(out)
    out2 = tmp_path / "r2"
    assert pre(synth, out2, "--anno_type", "id") == 0  # stops after epoch 1 of 1
    assert pre(synth, out2, "--anno_type", "id", "--epochs", "2",
               "--resume", str(out2 / "state.pt")) == 0
    resumed = rows(out2)
    assert [r["epoch"] for r in resumed] == [0, 1] and len(first) == 2
    assert pre(synth, tmp_path / "x", "--anno_type", "target",
               "--resume", str(out2 / "state.pt")) == 2  # an id state for a target run


@pytest.mark.parametrize("args, message", [
    (["--dataset", "synth", "--dataset_path", "/nonexistent"], "no such folder"),
    (["--dataset", "dvsg", "--dataset_path", "."], "no such folder"),
])
def test_missing_or_wrong_dataset_is_one_line(args, message, capsys, tmp_path):
    assert run(preposttrain_networks.main, args + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_incompatible_weights_fail_before_training(synth, tmp_path, capsys):
    from anonynoise.models import ClassNet

    torch.save(ClassNet("resnet18", 5, 10).state_dict(), tmp_path / "five.pth")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    out = tmp_path / "o"
    assert pre(synth, out, "--anno_type", "target", "--class_weights",
               str(tmp_path / "five.pth")) == 2
    assert "5 classes" in capsys.readouterr().err
    assert pipe(synth, out, "--target_weights", str(tmp_path / "junk.pt")) == 2
    assert "not a readable checkpoint" in capsys.readouterr().err
    assert pre(synth, out, "--anno_type", "target", "--network", "resnet34",
               "--class_weights", str(tmp_path / "five.pth")) == 2
    assert not (out / "metrics.jsonl").exists()


def test_an_out_folder_that_cannot_be_made_is_one_line(synth, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    assert pre(synth, tmp_path / "file" / "run", "--anno_type", "target") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out " in err[0] and "cannot create it" in err[0], err


def test_pipeline_refuses_event_reid_and_says_what_to_do(tmp_path, capsys):
    assert run(train_pipeline.main, ["--dataset", "reid", "--dataset_path", str(tmp_path)]) == 2
    assert "--prepostmode post" in capsys.readouterr().err


def test_torchrun_two_cpu_processes(synth, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "-m", "train.train_pipeline", "--dataset", "synth", "--dataset_path", str(synth),
           "--out", str(tmp_path / "ddp"), *TINY]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "weights identical on all 2 ranks" in done.stderr
    assert len(rows(tmp_path / "ddp")) == 1  # rank 0 alone writes


def test_reid_without_a_gallery_fails_before_training(tmp_path, capsys):
    # one session per person: every test recording is a query, none is left for the gallery;
    # the stage used to train a whole epoch and then fail on an empty list
    root = generate_dataset(tmp_path / "one", DatasetConfig(users=4, test_users=2, reps=1,
                                                            size=32, duration_s=0.5), workers=1)
    out = tmp_path / "o"
    assert pre(root, out, "--anno_type", "id") == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "no Re-ID gallery (query 22, gallery 0)" in err and "--reps 2" in err
    assert not (out / "metrics.jsonl").exists()
    assert pre(root, tmp_path / "t", "--anno_type", "target") == 0  # the task needs no gallery
