"""`edgekd pack`: bundle contents, manifest hashes, tarball, verification errors and stale inputs."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import pytest
from _deploy_run import CLASSES, SPEC, make_run

from edgekd.cli import main as cli_main
from edgekd.deploy import PackError, pack_bundle
from edgekd.runtime import RUNTIME_FILES
from edgekd.runtime.bundle import BundleError, load_bundle
from edgekd.utils.hashing import sha256_file


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("run") / "tiny")


def test_cpu_bundle_contents_and_manifest(run: Path, tmp_path: Path) -> None:
    res = pack_bundle(run, target="cpu", out=tmp_path / "cpu")
    m = res.manifest
    assert (m["format"], m["target"], m["precision"]) == ("edgekd-bundle-v1", "cpu", "fp32")
    assert m["model"] == {"backend": "openvino", "file": "model/model.xml", "precision_hint": "f32"}
    expected = {"model/model.xml", "model/model.bin", "model/engine.json", "labels.json", "preprocess.json",
                "requirements.txt"} | {f"edgekd_runtime/{f}" for f in RUNTIME_FILES}
    assert set(m["files"]) == expected
    for rel, digest in m["files"].items():
        assert sha256_file(res.directory / rel) == digest
    assert json.loads((res.directory / "labels.json").read_text()) == CLASSES
    spec = json.loads((res.directory / "preprocess.json").read_text())
    assert {k: spec[k] for k in SPEC} == SPEC and spec["resize_interpolation"] == "INTER_AREA"
    assert m["source"]["onnx_sha256"] == sha256_file(run / "export" / "student_kd.onnx")
    assert m["versions"]["openvino"] and m["versions"]["edgekd"]
    # the runtime files are the package's own, byte for byte, and all of them
    runtime_src = Path(__file__).resolve().parents[1] / "edgekd" / "runtime"
    assert set(RUNTIME_FILES) == {p.name for p in runtime_src.glob("*.py")}
    for f in RUNTIME_FILES:
        assert (res.directory / "edgekd_runtime" / f).read_bytes() == (runtime_src / f).read_bytes()
    with tarfile.open(res.tarball) as tar:
        names = {n[len("cpu/"):] for n in tar.getnames() if n.startswith("cpu/")}
        assert expected | {"manifest.json"} <= names
        extracted = tar.extractfile("cpu/model/model.bin")
        assert extracted is not None
        assert extracted.read() == (res.directory / "model" / "model.bin").read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_jetson_bundles_ship_onnx_and_build_script(run: Path, tmp_path: Path) -> None:
    fp16 = pack_bundle(run, target="jetson", out=tmp_path / "j16")
    assert fp16.manifest["precision"] == "fp16"
    model = fp16.manifest["model"]
    assert model["backend"] == "tensorrt" and model["file"] == "model/model.onnx"
    assert model["engine"] == "engines/model_fp16.plan" and model["input"] == {"name": "clip", "shape": [3, 4, 16, 16]}
    assert os.access(fp16.directory / "build_engine.sh", os.X_OK) and os.access(fp16.directory / "run.sh", os.X_OK)
    assert "model/model_int8_qdq.onnx" not in fp16.manifest["files"]
    assert fp16.manifest["model"]["file_fp16"] == "model/model_fp16.onnx"
    assert {"model/model_fp16.onnx", "model/model_fp16.json"} <= set(fp16.manifest["files"])
    int8 = pack_bundle(run, target="jetson", precision="int8", out=tmp_path / "j8")
    assert int8.manifest["model"]["file"] == "model/model_int8_qdq.onnx"
    assert int8.manifest["model"]["tensorrt_precision"] == "int8_qdq"
    assert "file_fp16" not in int8.manifest["model"]
    assert {"model/model.onnx", "model/model_int8_qdq.onnx"} <= set(int8.manifest["files"])
    # an engine built on the device lands in engines/, which verification ignores
    (int8.directory / "engines").mkdir()
    (int8.directory / "engines" / "model_int8_qdq.plan").write_bytes(b"plan")
    assert load_bundle(int8.directory).precision == "int8"


def test_verification_names_the_bad_file(run: Path, tmp_path: Path) -> None:
    res = pack_bundle(run, target="cpu", out=tmp_path / "b")
    bundle = res.directory
    (bundle / "labels.json").write_text(json.dumps(list(reversed(CLASSES))))
    with pytest.raises(BundleError, match="sha256 mismatch: labels.json"):
        load_bundle(bundle)
    shutil.copy2(run / "engines/student_kd/openvino_fp32/model.xml", bundle / "model" / "extra.xml")
    (bundle / "model" / "model.bin").unlink()
    with pytest.raises(BundleError) as err:
        load_bundle(bundle)
    assert "missing: model/model.bin" in str(err.value) and "not in manifest: model/extra.xml" in str(err.value)
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not a directory"):
        load_bundle(tmp_path / "nowhere")


def test_pack_refuses_bad_requests_and_stale_engines(run: Path, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="accepts precisions"):
        pack_bundle(run, target="cpu", precision="fp16", out=tmp_path / "x")
    with pytest.raises(PackError, match="--target"):
        pack_bundle(run, target="tpu", out=tmp_path / "x")
    with pytest.raises(PackError, match="openvino_int8.*missing|missing.*openvino_int8"):
        pack_bundle(run, target="cpu", precision="int8", out=tmp_path / "x")
    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    with (stale / "export" / "student_kd.onnx").open("ab") as f:
        f.write(b"\0")  # a re-export the engines stage has not seen
    with pytest.raises(PackError, match="stale"):
        pack_bundle(stale, target="cpu", out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_cli_pack(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["pack", str(run), "--target", "jetson", "--precision", "fp32", "--out", str(tmp_path / "c")]) == 0
    assert "jetson fp32" in capsys.readouterr().out
    assert (tmp_path / "c.tar.gz").is_file() and load_bundle(tmp_path / "c").target == "jetson"
    assert cli_main(["pack", str(tmp_path / "missing"), "--target", "cpu"]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_a_model_that_streams_ships_its_step_model(tmp_path: Path) -> None:
    """cpu: the OpenVINO step IR under model/stream/ with its step spec; jetson: the step ONNX (run
    with ONNX Runtime on the device); the manifest's ``stream`` entry names them. Without the
    target's step row the manifest says what to build; a step IR from another export is refused."""
    from _deploy_run import make_stream_run

    from edgekd.runtime.online import StepSpec

    run = make_stream_run(tmp_path / "run")
    cpu = pack_bundle(run, target="cpu", out=tmp_path / "cpu")
    stream = cpu.manifest["stream"]
    assert stream == {"backend": "openvino", "file": "model/stream/model.xml", "spec": "model/stream/model.json",
                      "precision": "fp32", "window": SPEC["clip_len"], "state_tensors": 10,
                      "engine_row": "openvino_fp32_stream"}
    assert {"model/stream/model.xml", "model/stream/model.bin", "model/stream/model.json",
            "model/stream/engine.json"} <= set(cpu.manifest["files"])
    assert StepSpec.load(cpu.directory / stream["spec"]).window == SPEC["clip_len"]
    assert cpu.manifest["model"]["file"] == "model/model.xml"  # the clip model is still the bundle's model
    jetson = pack_bundle(run, target="jetson", precision="fp32", out=tmp_path / "jetson")
    assert jetson.manifest["stream"]["backend"] == "onnxruntime"
    assert {"model/stream/model.onnx", "model/stream/model.json"} <= set(jetson.manifest["files"])
    assert (jetson.directory / "model/stream/model.onnx").read_bytes() == (run / "export/student_kd_step.onnx").read_bytes()
    # an int8 cpu bundle streams with the INT8 step IR when its row was built, else with the FP32 one and says so.
    # Pack only selects and copies: the IRs are stand-ins copied from the FP32 ones (the INT8 builders are tested
    # in test_engines_students.py; at this 16x16 crop OpenVINO 2026.4 cannot run TSM's INT8 IR)
    engines = run / "engines" / "student_kd"
    shutil.copytree(engines / "openvino_fp32", engines / "openvino_int8")
    fell_back = pack_bundle(run, target="cpu", precision="int8", out=tmp_path / "cpu_int8_fp32_step")
    assert fell_back.manifest["stream"]["engine_row"] == "openvino_fp32_stream"
    assert fell_back.manifest["stream"]["precision"] == "fp32"
    assert "openvino_int8_stream was not built" in fell_back.manifest["stream_note"]
    shutil.copytree(engines / "openvino_fp32_stream", engines / "openvino_int8_stream")
    int8 = pack_bundle(run, target="cpu", precision="int8", out=tmp_path / "cpu_int8")
    assert int8.manifest["stream"]["engine_row"] == "openvino_int8_stream"
    assert int8.manifest["stream"]["precision"] == "int8" and "stream_note" not in int8.manifest
    assert "stream_note" not in pack_bundle(run, target="cpu", out=tmp_path / "cpu2").manifest  # fp32: the FP32 step
    # exported, not built for this target: the manifest says so
    bare = make_stream_run(tmp_path / "bare", build_step_ir=False)
    res = pack_bundle(bare, target="cpu", out=tmp_path / "bare_cpu")
    assert "stream" not in res.manifest and "add openvino_fp32_stream to engines.build" in res.manifest["stream_missing"]
    # a re-exported step graph the engines stage has not seen
    stale = tmp_path / "stale"
    shutil.copytree(run, stale)
    with (stale / "export" / "student_kd_step.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(PackError, match="another step graph"):
        pack_bundle(stale, target="cpu", out=tmp_path / "x")


def test_c3d_bundles_have_no_stream_entry(run: Path, tmp_path: Path) -> None:
    res = pack_bundle(run, target="cpu", out=tmp_path / "c")
    assert "stream" not in res.manifest and "stream_missing" not in res.manifest
