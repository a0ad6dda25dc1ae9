from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import optuna
import pytest

from optuna_journal import FileBackend, JournalStorage
from optuna_journal.cli import main


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optuna_journal.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("command", [[], ["demo"], ["bench"]])
def test_cli_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    run = _run(*command, "--help", cwd=tmp_path)
    assert run.returncode == 0 and "usage: optuna-journal" in run.stdout


def test_cli_demo_optimises_with_worker_processes(tmp_path: Path) -> None:
    run = _run("demo", "--workers", "2", "--trials", "24", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Best trial: #" in run.stdout and "Trials per state:" in run.stdout
    journal = tmp_path / "optuna-journal-demo.journal"
    assert f"bytes at {journal}" in run.stdout
    trials = optuna.load_study(
        study_name="demo", storage=JournalStorage(FileBackend(journal))
    ).trials
    assert len(trials) == 24 and all(t.state.is_finished() for t in trials)
    assert any(t.intermediate_values for t in trials)


def test_cli_demo_reports_bad_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--workers", "0", "--journal", str(tmp_path / "d.journal")]) == 1
    assert "at least 1" in capsys.readouterr().err
    (tmp_path / "notes.txt").write_text("not a journal")
    assert main(["demo", "--journal", str(tmp_path / "notes.txt")]) == 1
    assert "not an optuna-journal log" in capsys.readouterr().err


def test_cli_bench_quick_measures_ours_against_optuna(tmp_path: Path) -> None:
    run = _run("bench", "--quick", "--json", str(tmp_path / "bench.json"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "| cold open | optuna-file |" in run.stdout and "1.00x" in run.stdout
    results = json.loads((tmp_path / "bench.json").read_text())["results"]
    measured = {(r["workload"], r["storage"]) for r in results if r["samples"]}
    assert {("cold open", "ours-file"), ("cold open", "ours-file+snapshot")} <= measured
    assert {("cold open", "ours-redis"), ("cold open", "optuna-redis")} <= measured
    assert all(r["ratio"] > 0 for r in results)
