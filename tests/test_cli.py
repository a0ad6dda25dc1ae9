from __future__ import annotations

import json
from pathlib import Path
import re
import subprocess
import sys
import threading

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


COMMANDS = [
    "demo",
    "bench",
    "studies",
    "trials",
    "history",
    "verify",
    "repair",
    "compact",
    "snapshot",
    "tail",
    "export",
    "import",
    "artifacts",
    "dashboard",
    "report",
]


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_cli_every_command_has_help(tmp_path: Path, command: list[str]) -> None:
    run = _run(*command, "--help", cwd=tmp_path)
    assert run.returncode == 0 and "usage: optuna-journal" in run.stdout


def test_cli_demo_optimises_with_worker_processes(tmp_path: Path) -> None:
    run = _run("demo", "--workers", "2", "--trials", "24", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Best trial: #" in run.stdout and "Trials per state:" in run.stdout
    journal = tmp_path / "optuna-journal-demo.journal"
    assert f"bytes at {journal}" in run.stdout
    assert f"optuna-journal dashboard {journal}\n" in run.stdout
    assert f"optuna-journal report {journal} -o report.html\n" in run.stdout
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
    assert {("lifecycle", "ours-file-trial"), ("concurrency, 4 processes", "ours-file-trial")} <= (
        measured
    )
    # The ceilings of durable appends run wherever trials are written; ours is put beside them.
    for workload in ("lifecycle", "tpe", "concurrency, 4 processes"):
        assert {(workload, "fsync-bound"), (workload, "redis-bound")} <= measured
    notes = {(r["workload"], r["storage"]): r["note"] for r in results}
    for workload in ("lifecycle", "concurrency, 4 processes"):
        assert re.fullmatch(r"\d+% of fsync-bound", notes[workload, "ours-file"])
        assert re.fullmatch(r"\d+% of redis-bound", notes[workload, "ours-redis"])
    assert all(r["ratio"] > 0 for r in results)
    workloads = {r["workload"] for r in results}
    assert {
        "lifecycle",
        "tpe",
        "get_all_trials",
        "get_best_trial",
        "concurrency, 4 processes",
        "cold open",
        "memory",
        "growth, trials 0-20",
        "growth, trials 180-200",
        "cold open, 2,000 trials",
        "memory, 2,000 trials",
        "get_all_trials, 2,000 trials",
        "get_best_trial, 2,000 trials",
    } <= workloads
    scale = {(w, k) for w, k in measured if w.endswith(", 2,000 trials")}
    assert ("cold open, 2,000 trials", "ours-file+snapshot") in scale
    assert ("get_all_trials, 2,000 trials", "optuna-file") in scale
    assert not [r for r in results if "CHECK FAILED" in r["note"]]


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "s.journal"
    study = optuna.create_study(storage=JournalStorage(FileBackend(path)), study_name="s")

    def objective(trial: optuna.Trial) -> float:
        trial.report(float("nan"), 0)
        return trial.suggest_float("x", 0, 1)

    study.optimize(objective, n_trials=3)
    return path


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_studies_and_trials_as_tables_and_json(
    journal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (study,) = _json(capsys, "studies", str(journal), "--json")  # type: ignore[misc]
    assert study["name"] == "s" and study["trials"] == 3 and study["states"] == {"COMPLETE": 3}
    trials = _json(capsys, "trials", str(journal), "s", "--json")
    assert [t["number"] for t in trials] == [0, 1, 2]  # type: ignore[union-attr]
    assert all(t["state"] == "COMPLETE" and "x" in t["params"] for t in trials)  # type: ignore[union-attr]
    assert main(["trials", str(journal), "s"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["number", "state", "values"] and len(table) == 4
    assert main(["trials", str(journal), "nope"]) == 1
    assert "No study with name 'nope'" in capsys.readouterr().err


def test_cli_history_of_a_trial_and_a_study(
    journal: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _json(capsys, "history", str(journal), "--trial", "1", "--json")
    ops = [e["op"] for e in entries]  # type: ignore[union-attr]
    assert ops[0] == "trial.created" and ops[-1] == "trial.state_set"
    assert main(["history", str(journal), "--study", "s"]) == 0
    out = capsys.readouterr().out
    assert "study.created" in out and out.count("trial.created") == 3


def test_cli_tail_export_snapshot_verify(
    journal: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["tail", "-n", "2", str(journal)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "trial.state_set" in lines[-1]
    assert main(["export", str(journal), "-o", str(tmp_path / "out.jsonl")]) == 0
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert records[0]["op"] == "journal.header" and records[0]["schema_version"] == 1
    values = [r["value"] for r in records if r["op"] == "trial.intermediate_value_set"]
    assert len(values) == 3 and all(v != v for v in values)  # NaN survives as NaN
    assert main(["snapshot", str(journal)]) == 0
    assert "snapshot saved at record" in capsys.readouterr().out
    report = _json(capsys, "verify", str(journal), "--json")
    assert report["sound"] and report["snapshot"].startswith("sound")  # type: ignore[index]
    # What a writer killed while snapshotting or compacting leaves is named, not a problem.
    for scratch in FileBackend(journal).scratch_paths:
        Path(scratch).write_bytes(b"half")
    report = _json(capsys, "verify", str(journal), "--json")
    assert report["sound"] and len(report["notes"]) == 2  # type: ignore[arg-type]
    assert "unfinished snapshot" in report["notes"][0]  # type: ignore[index]
    assert "unfinished compaction" in report["notes"][1]  # type: ignore[index]


def test_cli_tail_follows_new_records(journal: Path) -> None:
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "optuna_journal.cli",
            "tail",
            "-f",
            "-n",
            "0",
            "--interval",
            "0.05",
            str(journal),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    done = threading.Event()

    def write() -> None:  # until the follower shows one: it may take a while to start
        storage = JournalStorage(FileBackend(journal))
        for i in range(600):
            if done.wait(0.1):
                return
            storage.set_study_user_attr(0, "followed", i)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        line = follower.stdout.readline()  # type: ignore[union-attr]
        assert "study.user_attr_set" in line and "key=followed" in line
    finally:
        done.set()
        writer.join()
        follower.kill()
        follower.wait()
