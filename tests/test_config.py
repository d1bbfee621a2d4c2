"""Configuration parsing (gateway.config), the command line's use of it (gateway.cli), and the
repository scan (gateway.repository)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx_models
import pytest
from conftest import ROOT, copy_credit_risk, http_request, start_server

from gateway import cli
from gateway.config import (
    ConfigError,
    ModelConfig,
    ServerConfig,
    TracingConfig,
    from_mapping,
    load_server_config,
)
from gateway.errors import InvalidInput
from gateway.loading import warmup_samples
from gateway.protocol.types import ModelSignature, TensorMetadata
from gateway.repository import scan


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text)
    return path


# ---- server config ----------------------------------------------------------------------------


def test_defaults_without_a_file():
    assert load_server_config(None) == ServerConfig()


def test_every_section_is_read(tmp_path):
    path = _write(
        tmp_path,
        """
        host = "127.0.0.1"
        http_port = 9000
        max_request_bytes = 1024
        strict_readiness = false
        [tracing]
        exporter = "console"
        sample_ratio = 1
        [model_defaults]
        max_batch_size = 8
        max_queue_delay_us = 500
        shapes = { features = [-1, 20] }
        """,
    )
    config = load_server_config(path)
    assert (config.host, config.http_port, config.max_request_bytes) == ("127.0.0.1", 9000, 1024)
    assert config.strict_readiness is False
    assert config.grpc_port == ServerConfig().grpc_port  # untouched keys keep their defaults
    assert config.tracing == TracingConfig(exporter="console", sample_ratio=1.0)
    assert isinstance(config.tracing.sample_ratio, float)
    assert config.model_defaults.max_batch_size == 8
    assert config.model_defaults.max_queue_delay_us == 500
    assert config.model_defaults.instances == ModelConfig().instances
    assert config.model_defaults.shapes == {"features": [-1, 20]}


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("htp_port = 1\n", "htp_port"),
        ("[tracing]\nexport = 'off'\n", "export"),
        ("[model_defaults]\nmax_batch = 4\n", "max_batch"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
    ids=["top-level", "tracing", "model-defaults", "unknown-section"],
)
def test_unknown_key_is_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        load_server_config(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('http_port = "8000"\n', "http_port"),
        ("max_request_bytes = true\n", "max_request_bytes"),
        ("strict_readiness = 1\n", "strict_readiness"),
        ("host = 127\n", "host"),
        ("tracing = 'off'\n", "tracing"),
        ("[tracing]\nsample_ratio = '0.5'\n", "sample_ratio"),
        ("[model_defaults]\nmax_batch_size = 4.0\n", "max_batch_size"),
        ("[model_defaults]\nshapes = [1, 2]\n", "shapes"),
        # the items of typed tables and lists, which would otherwise fail only when used
        (
            "[model_defaults.feature_importances]\nage = 'high'\n",
            "'feature_importances.age'",
        ),
        ("[model_defaults.shapes]\nfeatures = [-1, '20']\n", r"'shapes.features\[1\]'"),
    ],
)
def test_wrong_type_is_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        load_server_config(_write(tmp_path, text))


def test_typed_table_items_are_converted_like_keys():
    config = from_mapping(ModelConfig, {"feature_importances": {"age": 2}}, "config.toml")
    assert config.feature_importances == {"age": 2.0}
    assert isinstance(config.feature_importances["age"], float)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("http_port = 70000\n", "http_port"),
        ("grpc_port = -1\n", "grpc_port"),
        ("max_request_bytes = 0\n", "max_request_bytes"),
        ("[tracing]\nexporter = 'zipkin'\n", "exporter"),
        ("[tracing]\nsample_ratio = 1.5\n", "sample_ratio"),
        ("[model_defaults]\ninstances = 0\n", "instances"),
        ("[model_defaults]\nmax_batch_size = -1\n", "max_batch_size"),
        ("[model_defaults]\nmax_queue_delay_us = -5\n", "max_queue_delay_us"),
        ("[model_defaults]\nbatch_wait = 'sometimes'\n", "batch_wait"),
        ("[model_defaults.feature_importances]\nage = -1\n", "feature_importances.age"),
        ("[model_defaults.feature_importances]\nage = nan\n", "feature_importances.age"),
        ("[model_defaults]\nintra_op_threads = 0\n", "intra_op_threads"),
        ("[model_defaults]\nshapes = { x = [-2, 3] }\n", "shapes.x"),
        ("[model_defaults]\nshapes = { x = 'any' }\n", "shapes.x"),
    ],
)
def test_bad_value_is_named(tmp_path, text, named):
    with pytest.raises(ConfigError, match=named):
        load_server_config(_write(tmp_path, text))


def test_malformed_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=r"server\.toml"):
        load_server_config(_write(tmp_path, "http_port = = 1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_server_config(tmp_path / "missing.toml")


def test_command_line_overrides_the_file(tmp_path):
    path = _write(tmp_path, 'host = "10.0.0.1"\nhttp_port = 9000\ngrpc_port = 9001\n')
    config = load_server_config(path, http_port=0, host=None, access_log=True)
    assert config.http_port == 0  # a given override wins, even a falsy one
    assert config.host == "10.0.0.1"  # None means "not given"
    assert config.grpc_port == 9001
    assert config.access_log is True


def test_command_line_values_are_checked_too(tmp_path):
    with pytest.raises(ConfigError, match="http_port"):
        load_server_config(None, http_port=99999)
    with pytest.raises(ConfigError, match="command line"):
        load_server_config(None, http_port="80")


def test_from_mapping_keeps_the_base():
    base = ModelConfig(max_batch_size=16, instances=3)
    derived = from_mapping(ModelConfig, {"max_queue_delay_us": 100}, "model", base)
    assert (derived.max_batch_size, derived.instances, derived.max_queue_delay_us) == (16, 3, 100)


def test_cli_reports_config_errors_and_exits_2(tmp_path, capsys):
    path = _write(tmp_path, "htp_port = 1\n")
    assert cli.main(["serve", "--config", str(path)]) == 2
    assert "htp_port" in capsys.readouterr().err
    assert cli.main(["serve", "--http-port", "70000"]) == 2
    assert "http_port" in capsys.readouterr().err


# ---- repository scan --------------------------------------------------------------------------


def _model(root: Path, name: str, *versions: str, config: str | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for version in versions:
        (folder / version).mkdir()
        (folder / version / "model.onnx").write_bytes(onnx_models.identity("FP32"))
    if config is not None:
        (folder / "config.toml").write_text(config)
    return folder


def test_scan_finds_integer_versions_in_order(tmp_path):
    folder = _model(tmp_path, "m", "2", "10", "1")
    (folder / "latest").mkdir()  # not an integer: ignored
    (folder / "3a").mkdir()
    (folder / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "README").write_text("not a model")
    found = scan(tmp_path, ModelConfig())
    assert [(s.model, s.version, s.problem) for s in found] == [
        ("m", "1", ""),
        ("m", "2", ""),
        ("m", "10", ""),
    ]
    assert found[0].model_file == folder / "1" / "model.onnx"


def test_scan_orders_models_by_name(tmp_path):
    for name in ("zeta", "alpha", "mid"):
        _model(tmp_path, name, "1")
    assert [s.model for s in scan(tmp_path, ModelConfig())] == ["alpha", "mid", "zeta"]


def test_scan_reports_a_missing_model_file(tmp_path):
    folder = _model(tmp_path, "m", "1")
    (folder / "2").mkdir()
    by_version = {s.version: s.problem for s in scan(tmp_path, ModelConfig())}
    assert by_version["1"] == ""
    assert "model.onnx" in by_version["2"]


def test_scan_reports_a_model_without_versions(tmp_path):
    (tmp_path / "empty").mkdir()
    (source,) = scan(tmp_path, ModelConfig())
    assert source.model == "empty"
    assert "version" in source.problem


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("max_batch_size = 'x'\n", "max_batch_size"),
        ("unknown_key = 1\n", "unknown_key"),
        ("instances = 0\n", "instances"),
        ("max_batch_size = \n", "config.toml"),
    ],
    ids=["wrong-type", "unknown-key", "bad-value", "malformed-toml"],
)
def test_scan_reports_a_broken_model_config_on_every_version(tmp_path, text, named):
    _model(tmp_path, "m", "1", "2", config=text)
    _model(tmp_path, "ok", "1")
    found = scan(tmp_path, ModelConfig())
    problems = {(s.model, s.version): s.problem for s in found}
    assert named in problems[("m", "1")]
    assert named in problems[("m", "2")]
    assert problems[("ok", "1")] == ""


def test_scan_applies_model_config_over_defaults(tmp_path):
    _model(tmp_path, "m", "1", config="max_batch_size = 4\n")
    _model(tmp_path, "plain", "1")
    defaults = ModelConfig(max_batch_size=32, instances=2)
    by_model = {s.model: s.config for s in scan(tmp_path, defaults)}
    assert by_model["m"].max_batch_size == 4
    assert by_model["m"].instances == 2  # from the defaults
    assert by_model["plain"] == defaults


def test_scan_refuses_a_missing_root(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        scan(tmp_path / "nowhere", ModelConfig())


def test_served_repository_reports_the_broken_config(http_url):
    """The session server's bad_config model: reported unavailable, naming the key."""
    answer = http_request("POST", f"{http_url}/v2/repository/index", b"")
    assert answer.status == 200
    (entry,) = [e for e in answer.json() if e["name"] == "bad_config"]
    assert entry["state"] == "UNAVAILABLE"
    assert "max_batch_size" in entry["reason"]


def test_unknown_log_level_is_a_config_error():
    with pytest.raises(ConfigError, match="log_level"):
        load_server_config(None, log_level="loud")


def test_cli_reports_a_missing_repository_cleanly(tmp_path):
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--repository",
            str(tmp_path / "nowhere"),
            "--host",
            "127.0.0.1",
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    assert "not a folder" in completed.stderr
    assert completed.returncode == 2


def test_cli_reports_bad_ldap_settings_before_opening_anything(tmp_path):
    config = tmp_path / "server.toml"
    config.write_text('[auth.ldap]\nuser_dn_template = "uid=nobody,dc=example"\n')
    journal = tmp_path / "journal"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--config",
            str(config),
            "--journal",
            str(journal),
            "--http-port",
            "0",
            "--grpc-port",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2, completed.stderr
    assert "user_dn_template" in completed.stderr and "Traceback" not in completed.stderr
    assert not journal.exists()  # refused before the journal was created


WARMUP_SIGNATURE = ModelSignature(
    platform="onnxruntime_onnx",
    inputs=(TensorMetadata("features", "FP32", (-1, 3)),),
    outputs=(TensorMetadata("label", "INT64", (-1,)),),
)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("{not json", "not JSON"),
        ("[]", "not an object"),
        ("{}", "no list of rows for features"),
        ('{"features": []}', "no list of rows for features"),
        ('{"features": 5}', "no list of rows for features"),
        ('{"features": [[1, 2, 3], [1, [2], 3]]}', "row 1"),
        ('{"features": [["a", "b", "c"]]}', "row 0"),
    ],
)
def test_a_bad_warmup_file_is_named(tmp_path, text, named):
    """A warm-up file the model cannot take fails its version's load naming the file,
    not with the error of whatever read it."""
    (tmp_path / "warmup.json").write_text(text)
    config = ModelConfig(warmup_file="warmup.json")
    with pytest.raises(InvalidInput, match=named) as raised:
        warmup_samples(config, tmp_path / "1", WARMUP_SIGNATURE)
    assert str(tmp_path / "warmup.json") in raised.value.message


def test_a_missing_warmup_file_is_named(tmp_path):
    config = ModelConfig(warmup_file="nowhere.json")
    with pytest.raises(InvalidInput, match=r"warmup_file .*nowhere\.json"):
        warmup_samples(config, tmp_path / "1", WARMUP_SIGNATURE)


def test_a_warmup_file_gives_one_sample_per_row(tmp_path):
    (tmp_path / "warmup.json").write_text('{"features": [[1, 2, 3], [4, 5, 6]], "extra": [1]}')
    samples = warmup_samples(
        ModelConfig(warmup_file="warmup.json"), tmp_path / "1", WARMUP_SIGNATURE
    )
    assert [s["features"].tolist() for s in samples] == [[[1, 2, 3]], [[4, 5, 6]]]
    assert all(s["features"].dtype == "float32" for s in samples)


def test_a_version_whose_golden_file_is_not_json_is_unavailable_naming_it(tmp_path):
    repository = tmp_path / "models"
    folder = copy_credit_risk(repository)
    (folder / "2" / "golden.json").write_text("{not json")
    with start_server(repository, expect_ready=False) as server:  # version 1 still serves
        index = http_request("POST", f"{server.http_url}/v2/repository/index").json()
    reasons = {entry["version"]: entry["reason"] for entry in index}
    assert reasons["1"] == ""
    assert reasons["2"].startswith("golden file ") and "golden.json: not JSON" in reasons["2"]
