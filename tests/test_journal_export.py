"""Exporting the journal while the gateway runs: the admin API's ExportJournal on both transports
and `modelgate admin export-journal`, against a real gateway on 127.0.0.1 whose prediction
records are durable (so every answered request's record is committed when the answer arrives).

Each export writes what is new past the stream's export mark into the server's export folder and
moves the mark; the file's records are the stream's, in order and whole; an export is itself an
admin record; bad input and missing roles are refused with nothing written.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from conftest import (
    CREDIT_RISK_FEATURES,
    ROOT,
    Server,
    copy_credit_risk,
    http_request,
    infer_credit_risk,
    start_server,
)
from test_admin_api import (
    GRPC,
    HTTP,
    STATUS,
    TRANSPORTS,
    Gateway,
    GrpcAdmin,
    HttpAdmin,
    open_gateway,
)

from gateway.control import JOURNAL_EXPORTED
from gateway.governance.ledger import ADMIN, PREDICTIONS, iter_records

CLI_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    root = tmp_path_factory.mktemp("journal-export")
    with open_gateway(root, model_config="record_durable = true\n") as running:
        yield running


def predict(server: Server, ids: list[str]) -> None:
    rows = np.random.default_rng(len(ids)).random((1, CREDIT_RISK_FEATURES), dtype=np.float32)
    for request_id in ids:
        infer_credit_risk(server, rows, request_id)


def exported(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of an export's file, checked to be whole and in order."""
    lines = Path(answer["path"]).read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    assert [r["seq"] for r in records] == list(
        range(int(answer["first_seq"]), int(answer["last_seq"]) + 1)
    )
    assert len(records) == int(answer["records"])
    return records


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_new_predictions_are_exported_while_serving(gateway: Gateway, transport: str) -> None:
    # whatever came before (the other transport's run, warm-ups): exported first
    gateway.ok(transport, "ExportJournal", {"stream": PREDICTIONS})
    ids = [f"{transport}-{i}" for i in range(5)]
    predict(gateway.server, ids)
    answer = gateway.ok(transport, "ExportJournal", {"stream": PREDICTIONS})
    records = exported(answer)
    assert [r["payload"]["request_id"] for r in records] == ids
    assert int(answer["exported_through"]) == int(answer["last_seq"])
    assert Path(answer["path"]).parent == gateway.server.journal / "exports"
    # nothing new: no file, the mark stays
    again = gateway.ok(transport, "ExportJournal", {"stream": PREDICTIONS})
    assert int(again.get("records", 0)) == 0 and again.get("path", "") == ""
    assert again["exported_through"] == answer["exported_through"]


def test_until_bounds_the_export_and_every_export_is_an_admin_record(gateway: Gateway) -> None:
    gateway.ok(HTTP, "ExportJournal", {"stream": PREDICTIONS})
    predict(gateway.server, ["late-0"])
    before = gateway.ok(HTTP, "ExportJournal", {"stream": PREDICTIONS, "until": "2000-01-01"})
    assert before["records"] == 0  # the new record is younger than `until`
    admin = gateway.ok(GRPC, "ExportJournal", {"stream": ADMIN})
    kinds = [r["kind"] for r in exported(admin)]
    # the exports made so far are on the admin stream, with what they wrote
    assert kinds.count(JOURNAL_EXPORTED) >= 3
    last = [r for r in exported(admin) if r["kind"] == JOURNAL_EXPORTED][-1]
    assert last["payload"] == {
        "stream": PREDICTIONS,
        "path": "",
        "records": 0,
        "exported_through": int(before["exported_through"]),
    }


REFUSALS: tuple[tuple[dict[str, Any], str | None, str, str], ...] = (
    ({"stream": "audit"}, "admin", "invalid", "'stream' must be one of"),
    ({"stream": PREDICTIONS, "until": "yesterday"}, "admin", "invalid", "ISO 8601"),
    ({"stream": PREDICTIONS}, "operator", "forbidden", "journal.export"),
    ({"stream": PREDICTIONS}, None, "unauthenticated", ""),
)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("document", "role", "kind", "message"), REFUSALS)
def test_bad_exports_are_refused_and_write_nothing(
    gateway: Gateway,
    transport: str,
    document: dict[str, Any],
    role: str | None,
    kind: str,
    message: str,
) -> None:
    folder = gateway.server.journal / "exports"
    files = sorted(folder.iterdir()) if folder.exists() else []
    predict(gateway.server, [f"refused-{transport}-{kind}"])  # something new to export
    token = gateway.tokens[role] if role else None
    answer = gateway.clients[transport].call("ExportJournal", document, token)
    assert answer.status == STATUS[transport][kind], answer
    assert message in answer.error
    assert (sorted(folder.iterdir()) if folder.exists() else []) == files


def test_the_cli_exports_and_says_so(gateway: Gateway) -> None:
    server = gateway.server
    predict(server, ["cli-0", "cli-1"])
    command = [sys.executable, "-m", "gateway", "admin", "--url", server.http_url]
    command += ["--token", server.admin_token, "export-journal", "--stream", PREDICTIONS]
    run = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert run.returncode == 0, run.stderr
    assert "records (seq" in run.stdout and "exported through seq" in run.stdout
    again = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )
    assert "nothing new to export" in again.stdout


def test_exported_files_match_the_journal(tmp_path: Path) -> None:
    """After the gateway stopped, every exported record equals the journal's own."""
    copy_credit_risk(tmp_path / "models", config="record_durable = true\n")
    with start_server(tmp_path / "models", config_dir=tmp_path) as server:
        predict(server, [f"whole-{i}" for i in range(4)])
        answer = http_request(
            "POST",
            f"{server.http_url}/admin/journal/export",
            {"stream": PREDICTIONS},
            server.admin_headers(),
        )
        assert answer.status == 200, answer.body
        journal = server.journal
    written = exported(answer.json())
    kept = {r.seq: r for r in iter_records(journal, PREDICTIONS)}
    for record in written:
        assert record["hash"] == kept[record["seq"]].hash
        assert record["payload"] == kept[record["seq"]].payload


def test_a_server_without_a_journal_says_so(tmp_path: Path) -> None:
    copy_credit_risk(tmp_path / "models")
    config = "[journal]\nenabled = false\n"
    with start_server(tmp_path / "models", config, config_dir=tmp_path) as server:
        grpc_admin = GrpcAdmin(server)
        try:
            for transport, client in ((HTTP, HttpAdmin(server)), (GRPC, grpc_admin)):
                answer = client.call("ExportJournal", {"stream": PREDICTIONS}, server.admin_token)
                assert answer.status == STATUS[transport]["unavailable"], answer
                assert "without a journal" in answer.error
        finally:
            grpc_admin.close()
