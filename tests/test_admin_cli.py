"""`modelgate admin` against a real gateway on 127.0.0.1 (a copy of credit_risk, versions 1, 2).

Each command runs as its own process, as an operator runs it (only what needs no gateway, the
requests that arguments make, is checked in-process). Exact checks read its --json
output; the human output is checked for what an operator looks for (the version rows, their
states and shares). A test that changes a deployment works on one of its own, loaded with the
CLI, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import (
    CREDIT_RISK_FEATURES,
    ROOT,
    Server,
    copy_credit_risk,
    http_request,
    model_file,
    run_direct,
    start_server,
)

from gateway import admin_cli

CLI_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("admin-cli")
    copy_credit_risk(root / "models")
    with start_server(root / "models", config_dir=root) as server:
        yield server


def modelgate(
    server: Server | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`modelgate admin ARGS` as a process: with the gateway's URL and admin token in its
    environment, unless `env` says otherwise (a None server: neither)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MODELGATE_")}
    if server is not None:
        environment |= {"MODELGATE_URL": server.http_url, "MODELGATE_TOKEN": server.admin_token}
    environment |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "admin", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def ok(server: Server, *args: str) -> str:
    """The output of a command that must succeed."""
    done = modelgate(server, *args)
    assert done.returncode == 0, (args, done.stderr)
    assert done.stderr == ""
    return done.stdout


def answer(server: Server, *args: str) -> Any:
    """The JSON answer of a command that must succeed."""
    return json.loads(ok(server, "--json", *args))


def refused(server: Server | None, *args: str, env: dict[str, str] | None = None) -> str:
    """The error message of a command that must be refused (exit status 2)."""
    done = modelgate(server, *args, env=env)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr


def row(table: str, first: str) -> str:
    """The table line that starts with the cell `first`."""
    return next(line for line in table.splitlines() if line.split()[:1] == [first])


def load_both(server: Server, deployment: str) -> None:
    """A deployment of the test's own: versions 1 and 2 of the repository (1 takes the traffic),
    loaded over HTTP directly (the `load` command has a test of its own)."""
    for version in ("1", "2"):
        source = {"kind": "repository", "model": "credit_risk", "version": version}
        loaded = http_request(
            "POST",
            f"{server.http_url}/admin/deployments/{deployment}/versions",
            {"version": version, "source": source},
            server.admin_headers(),
        )
        assert loaded.status == 200, loaded.body


def test_deployments_show_history_and_breakers(gateway: Server) -> None:
    listed = answer(gateway, "deployments")["deployments"]
    credit_risk = next(d for d in listed if d["name"] == "credit_risk")
    assert credit_risk["production"] == "2"
    assert [(v["version"], v["state"]) for v in credit_risk["versions"]] == [
        ("1", "READY"),
        ("2", "READY"),
    ]
    table = ok(gateway, "deployments")
    assert table.splitlines()[0].split() == ["DEPLOYMENT", "PRODUCTION", "POLICY", "VERSIONS"]
    assert row(table, "credit_risk").split() == ["credit_risk", "2", "2=100", "1:READY", "2:READY"]

    # `show --json` is the server's own answer
    shown = answer(gateway, "show", "credit_risk")
    direct = http_request(
        "GET", f"{gateway.http_url}/admin/deployments/credit_risk", None, gateway.admin_headers()
    )
    assert (
        shown["policy"]
        == direct.json()["policy"]
        == {
            "weights": {"2": 100},
            "sticky": False,
            "shadows": [],
            "fallback": [],
        }
    )
    table = ok(gateway, "show", "credit_risk")
    assert row(table, "policy").split() == ["policy", "2=100"]
    assert row(table, "VERSION").split()[:3] == ["VERSION", "STATE", "SHARE"]
    first, second = row(table, "1").split(), row(table, "2").split()
    assert first == ["1", "READY", "-", "closed", "-", "0", "repository", "credit_risk/1"]
    assert second == ["2", "READY", "100", "%", "closed", "-", "0", "repository", "credit_risk/2"]

    history = answer(gateway, "history", "credit_risk")["changes"]
    assert [(c["actor"], c["operation"]) for c in history] == [("startup", "default")]
    table = ok(gateway, "history", "credit_risk")
    assert table.splitlines()[0].split() == ["TIME", "ACTOR", "OPERATION", "POLICY", "REASON"]
    assert table.splitlines()[1].split()[1:] == ["startup", "default", "2=100", "newest", "version"]

    breakers = ok(gateway, "breakers", "credit_risk")
    assert row(breakers, "1").split()[:2] == ["1", "closed"]
    assert row(breakers, "2").split()[:2] == ["2", "closed"]
    assert "warm-up runs passed" in ok(gateway, "warmup", "credit_risk", "2")


def test_traffic_then_show_reflects_it(gateway: Server) -> None:
    load_both(gateway, "split")
    table = ok(gateway, "traffic", "split", "1=90", "2=10", "--fallback", "2", "--reason", "a/b")
    assert row(table, "policy").split() == ["policy", "1=90", "2=10,", "fallback", "2"]
    assert row(table, "1").split()[:4] == ["1", "READY", "90", "%"]
    assert row(table, "2").split()[:4] == ["2", "READY", "10", "%"]
    shown = answer(gateway, "show", "split")
    assert shown["policy"] == {
        "weights": {"1": 90, "2": 10},
        "sticky": False,
        "shadows": [],
        "fallback": ["2"],
    }
    assert shown["production"] == "1"
    last = answer(gateway, "history", "split")["changes"][-1]
    assert (last["operation"], last["reason"]) == ("traffic", "a/b")
    assert last["actor"].startswith("token:admin/")

    sticky = answer(gateway, "traffic", "split", "1=1", "2=3", "--sticky")
    assert sticky["policy"]["sticky"] is True and sticky["production"] == "2"


def test_a_change_waiting_for_approval_says_so(gateway: Server) -> None:
    load_both(gateway, "important")
    importance = http_request(
        "PUT",
        f"{gateway.http_url}/admin/deployments/important/importance",
        {"importance": "high"},
        gateway.admin_headers(),
    )
    assert importance.status == 200, importance.body
    table = ok(gateway, "traffic", "important", "1=50", "2=50")
    assert table.startswith("pending approval: change ")
    assert "(SetTraffic), not applied until approved" in table.splitlines()[0]
    assert row(table, "policy").split() == ["policy", "1=100"]  # as it was


def test_load_from_the_repository_and_from_files(gateway: Server, tmp_path: Path) -> None:
    models = gateway.repository / "credit_risk"
    # copied after the start: a version the server has not seen
    shutil.copytree(models / "2", models / "3")
    loaded = answer(
        gateway, "load", "loaded", "3", "--repository", "credit_risk/3", "--reason", "new"
    )
    # a new deployment's first version takes all its traffic
    assert loaded["policy"]["weights"] == {"3": 100}
    assert loaded["versions"][0]["source"] == {
        "kind": "repository",
        "model": "credit_risk",
        "version": "3",
    }

    upload = model_file(gateway.repository, "credit_risk", "1")
    table = ok(gateway, "load", "loaded", "4", "--file", str(upload))
    assert row(table, "4").split()[:3] == ["4", "READY", "-"]  # loaded, but no traffic yet
    digest = hashlib.sha256(upload.read_bytes()).hexdigest()
    assert f"upload sha256:{digest[:12]}" in row(table, "4")

    # with golden outputs, which the file must reproduce
    zeros = np.zeros((1, CREDIT_RISK_FEATURES), dtype=np.float32)
    outputs = run_direct(upload, {"features": zeros})
    golden = tmp_path / "golden.json"
    golden.write_text(
        json.dumps(
            {
                "inputs": {"features": zeros.tolist()},
                "outputs": {name: value.tolist() for name, value in outputs.items()},
            }
        )
    )
    loaded = answer(gateway, "load", "loaded", "5", "--file", str(upload), "--golden", str(golden))
    assert [(v["version"], v["state"]) for v in loaded["versions"]] == [
        ("3", "READY"),
        ("4", "READY"),
        ("5", "READY"),
    ]
    labels = outputs["label"].tolist()
    golden.write_text(
        json.dumps({"inputs": {"features": zeros.tolist()}, "outputs": {"label": [1 - labels[0]]}})
    )
    error = refused(gateway, "load", "loaded", "6", "--file", str(upload), "--golden", str(golden))
    assert error.startswith("error: golden output 'label' differs") and "(HTTP 400)" in error
    assert "6" not in {v["version"] for v in answer(gateway, "show", "loaded")["versions"]}


def test_shadow_rollback_and_unload(gateway: Server) -> None:
    load_both(gateway, "shadowed")
    table = ok(gateway, "shadow", "shadowed", "2", "on", "--reason", "compare")
    assert row(table, "policy").split() == ["policy", "1=100,", "shadows", "2"]
    assert answer(gateway, "shadow", "shadowed", "2", "off")["policy"]["shadows"] == []
    rolled_back = answer(gateway, "rollback", "shadowed", "--reason", "compare again")
    assert rolled_back["policy"]["shadows"] == ["2"]
    operations = [c["operation"] for c in answer(gateway, "history", "shadowed")["changes"]]
    assert operations == ["load", "shadow", "shadow", "rollback"]

    # a version the policy uses cannot go; out of the policy, it can
    error = refused(gateway, "unload", "shadowed", "2")
    assert error == (
        "error: version '2' of 'shadowed' is in its traffic policy; set traffic without it first "
        "(HTTP 400)\n"
    )
    ok(gateway, "traffic", "shadowed", "1=100")
    table = ok(gateway, "unload", "shadowed", "2", "--reason", "retired")
    assert row(table, "2").split()[:2] == ["2", "UNLOADED"]


def test_a_canary_is_started_paused_and_aborted(gateway: Server) -> None:
    load_both(gateway, "canaried")
    # checks an hour apart: nothing moves on its own while the test runs
    plan = "--steps 10,100 --dwell 3600 --interval 3600 --failure-limit 2"
    guards = "--min-requests 5 --max-p99-ms 50"
    started = answer(gateway, "canary", "start", "canaried", "2", *plan.split(), *guards.split())
    assert started["policy"]["weights"] == {"1": 90, "2": 10}
    plan = started["rollout"]["plan"]
    assert plan["steps"] == [10, 100] and plan["failure_limit"] == 2
    assert plan["guards"]["min_requests"] == 5 and plan["guards"]["max_p99_ms"] == 50
    table = ok(gateway, "canary", "pause", "canaried", "--reason", "a look")
    assert row(table, "rollout").split(None, 1)[1] == (
        "canary 2 against 1: paused, step 1 of 2 (10 %), failed checks 0 of 2; a look"
    )
    aborted = answer(gateway, "canary", "abort", "canaried")
    assert aborted["rollout"]["phase"] == "aborted"
    assert aborted["policy"]["weights"] == {"1": 100}


def test_refusals_are_one_line_with_the_reason(gateway: Server, tmp_path: Path) -> None:
    unknown = refused(gateway, "show", "nowhere")
    assert unknown == "error: model 'nowhere' not found (HTTP 404)\n"
    assert refused(gateway, "traffic", "credit_risk", "1=-5").startswith(
        "error: the weight of version '1' is negative"
    )
    bad_argument = refused(gateway, "traffic", "credit_risk", "1=ninety")
    assert "'1=ninety' is not VERSION=WEIGHT" in bad_argument

    no_token = refused(None, "deployments", env={"MODELGATE_URL": gateway.http_url})
    assert no_token == (
        "error: no API token: pass --token or --token-file, or set MODELGATE_TOKEN\n"
    )
    wrong = refused(gateway, "--token", "mg_wrong", "deployments")
    assert wrong.startswith("error: ") and "(HTTP 401)" in wrong
    token_file = tmp_path / "token"
    token_file.write_text(gateway.admin_token + "\n")
    listed = modelgate(
        None, "--url", gateway.http_url, "--token-file", str(token_file), "deployments"
    )
    assert listed.returncode == 0 and "credit_risk" in listed.stdout

    # nobody listens: a failure of the server's side, exit status 1
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{unused.getsockname()[1]}"
    down = modelgate(gateway, "--url", closed, "deployments")
    assert down.returncode == 1 and down.stderr.startswith(f"error: cannot reach {closed}: ")
    assert "Traceback" not in down.stderr


def request_of(command: str) -> admin_cli.Request:
    """The request `modelgate admin COMMAND` would send, made without a gateway."""
    parser = argparse.ArgumentParser()
    admin_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["admin", *command.split()])
    return args.build(args)


@pytest.mark.parametrize(
    ("command", "rpc", "body"),
    [
        (
            "load d 7 --remote triton:8001 --remote-model m --timeout 2.5 --reason r",
            "LoadVersion",
            {
                "version": "7",
                "reason": "r",
                "source": {
                    "kind": "remote",
                    "url": "triton:8001",
                    "model": "m",
                    "version": "",
                    "timeout_s": 2.5,
                },
            },
        ),
        (
            "traffic d 1=1 2=3 --shadow 3 --fallback 1 --fallback 2",
            "SetTraffic",
            {
                "weights": {"1": 1, "2": 3},
                "sticky": False,
                "shadows": ["3"],
                "fallback": ["1", "2"],
                "reason": "",
            },
        ),
        (
            "canary start d 2 --max-p99-ratio 2 --min-success-rate 0.95",
            "StartCanary",
            {
                "version": "2",
                "plan": {"guards": {"min_success_rate": 0.95, "max_p99_ratio": 2.0}},
                "reason": "",
            },
        ),
        ("canary promote d --reason go", "PromoteCanary", {"reason": "go"}),
        ("canary resume d", "ResumeCanary", {"reason": ""}),
    ],
)
def test_arguments_make_the_request(command: str, rpc: str, body: dict[str, Any]) -> None:
    request = request_of(command)
    assert (request.rpc, request.params["deployment"], request.body) == (rpc, "d", body)
