"""Strict typed recipes: every error at once, each with its dotted path."""

from pathlib import Path

import pytest

from edgekd.recipe import RecipeError
from edgekd.stages.validate import load_recipe, parse_recipe

REPO = Path(__file__).resolve().parents[1]


def test_shipped_recipes_load():
    for p in sorted((REPO / "recipes").glob("*.yaml")):
        r = load_recipe(p)
        assert r.name


def test_defaults_follow_the_paper():
    r = parse_recipe({"name": "x"})
    assert r.teacher.model == "c3d_teacher" and r.student.model == "c3d_student"
    assert r.student.optimizer == "adam" and r.student.lr == 1e-4
    assert r.data.clip_len == 16 and r.data.crop == (112, 112)
    assert r.bench.reference_cpu_mhz == 2500.0


def test_unknown_keys_are_named_with_suggestion_and_all_reported():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"ullah": {"temprature": 3}}, "data": {"crop": [1, 2, 3], "source": "ucf10"},
                      "teacher": {"epochs": "ten"}, "benchh": {}})
    msg = str(e.value)
    assert "distill.ullah.temprature: unknown key, did you mean distill.ullah.temperature?" in msg
    assert "data.crop: expected 2 values" in msg
    assert "data.source: 'ucf10' is not one of" in msg and "did you mean 'ucf101'" in msg
    assert "teacher.epochs: expected an integer, got 'ten'" in msg
    assert "benchh: unknown key, did you mean bench?" in msg
    assert len(e.value.errors) == 5


def test_range_checks_name_field_and_value():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"ullah": {"alpha": 1.5, "temperature": 0}, "transfer_variants": 0},
                      "data": {"crop": [200, 200]}})
    msg = str(e.value)
    assert "distill.transfer_variants: must be >= 1 or null, got 0" in msg
    assert "distill.ullah.alpha: must be in [0, 1], got 1.5" in msg
    assert "distill.ullah.temperature: must be > 0, got 0.0" in msg
    assert "data.crop [200, 200] must fit inside data.resize [128, 171]" in msg


def test_missing_name_and_root():
    with pytest.raises(RecipeError, match="name: required key is missing"):
        parse_recipe({})
    with pytest.raises(RecipeError, match="data.root: required"):
        parse_recipe({"name": "x", "data": {"source": "folder"}})


def test_overrides_are_typed_and_checked(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: r\ndistill:\n  ullah:\n    temperature: 10\n")
    r = load_recipe(p, ["distill.ullah.temperature=5", "data.crop=[56, 56]", "data.resize=[64, 85]"])
    assert r.distill.blocks["ullah"]["temperature"] == 5 and r.data.crop == (56, 56)
    with pytest.raises(RecipeError, match="distill.ullah.tmperature: unknown key, did you mean distill.ullah.temperature"):
        load_recipe(p, ["distill.ullah.tmperature=4"])


def test_hash_changes_only_with_its_sections():
    a = parse_recipe({"name": "x"})
    b = parse_recipe({"name": "x", "distill": {"ullah": {"temperature": 5}}})
    assert a.section_hash("teacher") == b.section_hash("teacher")
    assert a.section_hash("distill") != b.section_hash("distill")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="invalid YAML"):
        load_recipe(bad)


def test_the_issue_example_and_ranges_for_t_alpha_fraction():
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"ullah": {"temprature": 3}}})
    assert str(e.value).endswith("  - distill.ullah.temprature: unknown key, did you mean distill.ullah.temperature?")
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "distill": {"ullah": {"temperature": -1, "alpha": -0.1}}, "data": {"fraction": 0}})
    assert set(e.value.errors) == {"data.fraction: must be a percentage in (0, 100], got 0.0",
                                   "distill.ullah.temperature: must be > 0, got -1.0",
                                   "distill.ullah.alpha: must be in [0, 1], got -0.1"}  # all three at once
    with pytest.raises(RecipeError, match=r"data.fraction: must be a percentage in \(0, 100\], got 150.0"):
        parse_recipe({"name": "x", "data": {"fraction": 150}})
    ok = parse_recipe({"name": "x", "distill": {"ullah": {"alpha": 0, "temperature": 0.5}}, "data": {"fraction": 100}})
    assert ok.distill.blocks["ullah"] == {"alpha": 0, "temperature": 0.5} and ok.data.fraction == 100.0


def test_reliability_keys_are_typed():
    r = parse_recipe({"name": "x", "deterministic": True, "student": {"lr_schedule": "cosine"}})
    assert r.deterministic is True and r.student.lr_schedule == "cosine" and r.teacher.lr_schedule == "constant"
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "deterministic": "yes", "student": {"lr_schedule": "cosin"}})
    assert "deterministic: expected true/false, got 'yes'" in str(e.value)
    assert "student.lr_schedule: 'cosin' is not one of ['constant', 'cosine'], did you mean 'cosine'?" in str(e.value)


def test_teacher_checkpoint_with_other_classes_or_inputs_is_refused_showing_both(tmp_path):
    from types import SimpleNamespace

    import torch.nn as nn

    from edgekd.stages.distill_stage import _kd_setup
    from edgekd.stages.rundir import RunDir
    from edgekd.train.checkpoint import save_checkpoint

    rd = RunDir(parse_recipe({"name": "x", "runs_dir": str(tmp_path)}))
    spec = {"clip_len": 8, "frame_interval": 1, "resize": [32, 42], "crop": [32, 32], "mean": [0.4, 0.4, 0.4],
            "std": [0.2, 0.2, 0.2], "layout": "NCTHW", "color": "RGB", "modality": "rgb"}
    ctx = SimpleNamespace(split=SimpleNamespace(classes=["sit_down", "walk"]), input_spec=lambda modality="rgb": dict(spec))

    def teacher(classes, **spec_changes):
        save_checkpoint(rd.stage_dir("teacher") / "ckpt.pt", nn.Linear(2, 2), model_name="c3d_teacher",
                        model_kwargs={}, classes=classes, input_spec={**spec, **spec_changes}, metrics={})

    teacher(["sit_down", "stand_up"])
    with pytest.raises(ValueError) as e:
        _kd_setup(rd, ctx, rd.recipe.student, nn.Linear(2, 2), "fp32")
    assert "teacher classes ['sit_down', 'stand_up'] differ from the dataset's ['sit_down', 'walk']" in str(e.value)
    teacher(["sit_down", "walk"], crop=[28, 28])
    with pytest.raises(ValueError) as e:
        _kd_setup(rd, ctx, rd.recipe.student, nn.Linear(2, 2), "fp32")
    assert "crop: teacher [28, 28] vs student [32, 32]" in str(e.value)


def test_export_streaming_values_and_cross_checks():
    """export.streaming: auto | true | false. true needs every edge model to stream; false leaves
    nothing for the streaming engine rows to run, so listing one is an error."""
    assert parse_recipe({"name": "x"}).export.streaming == "auto"
    with pytest.raises(RecipeError) as e:
        parse_recipe({"name": "x", "export": {"streaming": "atuo"}})
    assert "export.streaming: 'atuo' is not one of ['auto', True, False], did you mean 'auto'?" in str(e.value)
    assert len(e.value.errors) == 1
    with pytest.raises(RecipeError, match="export.streaming: must be auto, true or false, got 1"):
        parse_recipe({"name": "x", "export": {"streaming": 1}})  # YAML 1 == True as a Literal member
    with pytest.raises(RecipeError, match="export.streaming: true needs every engines.edge_models model to stream; "
                                          "student_kd is student.model 'c3d_student'"):
        parse_recipe({"name": "x", "export": {"streaming": True}})
    online = {"name": "x", "export": {"streaming": True}, "student": {"model": "tsm_mobilenetv2_online"},
              "engines": {"build": ["openvino_fp32", "openvino_fp32_stream"]}}
    assert parse_recipe(online).export.streaming is True
    with pytest.raises(RecipeError) as e:
        parse_recipe({**online, "export": {"streaming": False},
                      "bench": {"engines": ["openvino_fp32", "onnxruntime_fp32_stream"]}})
    assert "engines.build[1]: 'openvino_fp32_stream' runs the per-frame step graph" in str(e.value)
    assert "bench.engines[1]: 'onnxruntime_fp32_stream' runs the per-frame step graph" in str(e.value)
