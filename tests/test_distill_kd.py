"""KD assembly: teacher/student compatibility, recipe keys, flow teacher -> RGB student (IMRS),
and a tiny synthetic end-to-end run of run_train through the real data stage with flow."""

import json
from pathlib import Path

import pytest
import torch

from edgekd.distill.kd import build_kd, check_teacher_compatible
from edgekd.distill.losses import resolve
from edgekd.models import build_model
from edgekd.recipe import DistillConfig, RecipeError
from edgekd.stages.validate import parse_recipe

REPO = Path(__file__).resolve().parents[1]
RGB = {"clip_len": 8, "frame_interval": 2, "resize": [40, 53], "crop": [32, 32], "mean": [0.4, 0.4, 0.4],
       "std": [0.2, 0.2, 0.2], "layout": "NCTHW", "color": "RGB", "modality": "rgb"}
FLOW = {**RGB, "mean": [0.0, 0.0], "std": [1.0, 1.0], "color": "FLOW_XY", "modality": "flow", "flow": "farneback"}


def test_teacher_with_other_classes_or_clips_is_refused_showing_both_values():
    with pytest.raises(ValueError, match=r"teacher classes \['a', 'b'\] differ from the dataset's \['a', 'c'\]"):
        check_teacher_compatible(["a", "b"], RGB, ["a", "c"], RGB, same_modality=True)
    with pytest.raises(ValueError, match=r"crop: teacher \[32, 32\] vs student \[24, 24\]"):
        check_teacher_compatible(["a"], RGB, ["a"], {**RGB, "crop": [24, 24]}, same_modality=True)
    with pytest.raises(ValueError, match=r"mean: teacher"):  # same modality: normalisation must agree too
        check_teacher_compatible(["a"], RGB, ["a"], {**RGB, "mean": [0.5, 0.5, 0.5]}, same_modality=True)


def test_flow_teacher_is_accepted_for_an_rgb_student_only_when_frames_agree():
    check_teacher_compatible(["a"], FLOW, ["a"], RGB, same_modality=False)  # own mean/std/color: fine
    with pytest.raises(ValueError, match=r"frame_interval: teacher 2 vs student 1"):
        check_teacher_compatible(["a"], FLOW, ["a"], {**RGB, "frame_interval": 1}, same_modality=False)


def test_recipe_distill_keys_are_range_checked_with_their_paths():
    r = parse_recipe({"name": "x", "distill": {"method": "hu", "hu": {"lambda1": 10}, "camarena": {"tau": 2}},
                      "teacher": {"modality": "flow"}, "data": {"flow": "farneback"}})
    loss, params = resolve(r.distill)
    assert loss.name == "feature_mse_kl" and params.lambda1 == 10.0 and params.lambda2 == 200.0
    assert r.teacher.modality == "flow" and (r.distill.cache, r.distill.teacher_backend) == ("memory", "pytorch")
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"method": "hinton", "camarena": {"tau": 0}, "teacher_backend": "onnx"}})
    msg = str(e.value)
    assert "distill.method: unknown KD loss 'hinton'" in msg and "distill.teacher_backend" in msg
    assert "distill.camarena.tau: must be > 0, got 0" in msg
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"camarena": {"tau": 0}, "hu": {"lambda2": -1}},
                      "student": {"modality": "flow"}})
    msg = str(e.value)
    assert "distill.camarena.tau: must be > 0, got 0" in msg and "distill.hu.lambda2: must be >= 0, got -1" in msg
    assert "student.modality: a 'flow' student needs a 'flow' teacher" in msg
    assert "student.modality: 'flow' needs optical flow from the data stage; set data.flow" in msg


def test_flow_teacher_reads_extras_flow_while_the_student_sees_rgb():
    shape = (8, 32, 32)
    torch.manual_seed(0)
    teacher = build_model("c3d_teacher", num_classes=3, input_size=shape, width_mult=0.125, dropout=0.0, in_channels=2)
    student = build_model("c3d_student", num_classes=3, input_size=shape, width_mult=0.25, dropout=0.0)
    kd = build_kd(DistillConfig(method="camarena", cache="off"), teacher, student, teacher_input_shape=(2, *shape),
                  student_input_shape=(3, *shape), precision="fp32", channels_last=False, teacher_input="flow")
    rgb, flow, y = torch.randn(2, 3, *shape), torch.randn(2, 2, *shape), torch.tensor([0, 2])
    logits = student(rgb)
    loss = kd.loss_fn(logits, y, rgb, {"flow": flow})
    from edgekd.distill.losses.kl_tau2 import camarena_kd_loss

    with torch.no_grad():
        want = camarena_kd_loss(logits, teacher.eval()(flow), y)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    with pytest.raises(KeyError, match="extras\\['flow'\\]"):
        kd.loss_fn(logits, y, rgb, {})


@pytest.mark.slow
def test_flow_teacher_to_rgb_student_end_to_end(tmp_path):
    """Synthetic videos with Farneback flow: a flow teacher trains on 2-channel clips, a Hu-KD RGB
    student on aligned rgb+flow batches with cacheable augmentation variants; the student's
    checkpoint is an RGB network and its teacher outputs were replayed from the cache."""
    from edgekd.stages.runner import run_pipeline

    data = {"source": "synthetic", "synthetic": {"classes": ["walk", "jumping_jack", "sit_down"], "per_class": 8,
                                                 "clips_per_group": 2, "num_frames": 16, "size": [48, 36]},
            "clip_len": 4, "frame_interval": 2, "resize": [24, 32], "crop": [16, 16], "workers": 0,
            "cache_dir": str(tmp_path / "cache"), "flow": "farneback"}
    small = {"width_mult": 0.125, "epochs": 2, "batch_size": 4, "lr": 1e-3, "dropout": 0.0, "precision": "fp32",
             "channels_last": False}
    recipe = parse_recipe({"name": "imrs", "runs_dir": str(tmp_path / "runs"), "data": data,
                           "teacher": {"model": "c3d_teacher", "modality": "flow", **small},
                           "student": {"model": "c3d_student", **small, "width_mult": 0.25, "aug_variants": 1},
                           "distill": {"method": "hu", "cache": "disk"}})
    rd = run_pipeline(recipe, ["data", "teacher", "teacher_outputs", "student_kd"])
    from edgekd.train.checkpoint import load_checkpoint

    teacher, student = load_checkpoint(rd.stage_dir("teacher") / "ckpt.pt"), load_checkpoint(rd.stage_dir("student_kd") / "ckpt.pt")
    assert teacher.input_spec["modality"] == "flow" and teacher.state_dict["features.conv1.weight"].shape[1] == 2
    assert student.input_spec["modality"] == "rgb" and student.state_dict["features.conv1.weight"].shape[1] == 3
    out = json.loads((rd.stage_dir("student_kd") / "stage.json").read_text())["outputs"]
    assert out["kd"]["method"] == "hu" and out["kd"]["projection"] == "Linear"  # student fc7 256 -> teacher 512
    cache = out["kd"]["cache"]
    n_train = len(json.loads((rd.stage_dir("data") / "split.json").read_text())["train"])
    # the teacher_outputs stage computed every (video, variant) once (V = 1): both epochs only replayed
    pre = json.loads((rd.stage_dir("teacher_outputs") / "stage.json").read_text())["outputs"]
    assert pre["precomputed"] and pre["entries"] == n_train
    assert cache["entries"] == n_train and cache["hits"] == 2 * n_train and cache["misses"] == 0
    assert (rd.stage_dir("student_kd") / "kd_projection.pt").is_file()
    assert 0.0 <= out["test_top1"] <= 1.0


@pytest.mark.slow
def test_precomputed_teacher_outputs_train_the_same_student_as_a_live_teacher(tmp_path):
    """The teacher_outputs stage computes the teacher's outputs before training, at KD's batch size
    and on the same clips: the KD student trained on them is bit-identical to one whose teacher
    ran during training (fp32, one thread of work per stage, as KD runs it), transfer set included
    (at one variant per transfer-set video, against the students' two per labelled video)."""
    from edgekd.stages.runner import run_pipeline

    data = {"source": "synthetic", "synthetic": {"classes": ["walk", "jumping_jack", "sit_down"], "per_class": 6,
                                                 "clips_per_group": 2, "num_frames": 16, "size": [48, 36]},
            "unlabeled": {"source": "synthetic", "count": 6},
            "clip_len": 4, "frame_interval": 2, "resize": [24, 32], "crop": [16, 16], "workers": 0,
            "cache_dir": str(tmp_path / "cache")}
    small = {"width_mult": 0.125, "epochs": 2, "batch_size": 4, "lr": 1e-3, "dropout": 0.0, "precision": "fp32",
             "channels_last": False}
    rows = {}
    for cache in ("disk", "memory"):
        recipe = parse_recipe({"name": cache, "runs_dir": str(tmp_path / "runs"), "data": data,
                               "teacher": {"model": "c3d_student", **small},
                               "student": {"model": "c3d_student", **small, "aug_variants": 2, "aug_schedule": "cycle"},
                               "distill": {"method": "ullah", "cache": cache, "unlabeled_ratio": 0.5,
                                           "transfer_variants": 1}})
        rd = run_pipeline(recipe, ["data", "teacher", "teacher_outputs", "student_kd"])
        rows[cache] = [{k: v for k, v in json.loads(line).items() if k not in ("clips_per_s", "epoch_s")}
                       for line in (rd.stage_dir("student_kd") / "metrics.jsonl").read_text().splitlines()]
        out = json.loads((rd.stage_dir("student_kd") / "stage.json").read_text())["outputs"]["kd"]["cache"]
        if cache == "disk":
            assert out["misses"] == 0 and out["hits"] > 0  # every clip's outputs came from the stage
            pre = json.loads((rd.stage_dir("teacher_outputs") / "stage.json").read_text())["outputs"]
            n_train = len(json.loads((rd.stage_dir("data") / "split.json").read_text())["train"])
            # 2 variants of each labelled video, 1 of each of the 6 transfer-set videos
            assert pre["entries"] == 2 * n_train + 6 and pre["transfer_variants"] == 1
    assert rows["disk"] == rows["memory"] and len(rows["disk"]) == 2
