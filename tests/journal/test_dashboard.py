"""optuna-dashboard serves a journal: its own WSGI app, called as a server would call it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard

from optuna_journal import FileBackend, JournalStorage
from tests import workers


def _get(app: Any, path: str) -> Any:
    environ: dict[str, Any] = {"PATH_INFO": path, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], (path, status, body[:200])
    return json.loads(body)


def test_dashboard_lists_and_shows_a_study_from_a_journal(tmp_path: Path) -> None:
    storage = JournalStorage(FileBackend(tmp_path / "s.journal"))
    study = optuna.create_study(storage=storage, study_name="shown")
    study.optimize(workers.quadratic, n_trials=5)
    optuna_dashboard.save_note(study, "a note the dashboard keeps in system attrs")
    app = optuna_dashboard.wsgi(storage)

    listed = _get(app, "/api/studies")["study_summaries"]
    assert [(s["study_id"], s["study_name"]) for s in listed] == [(0, "shown")]
    detail = _get(app, "/api/studies/0")
    assert [t["number"] for t in detail["trials"]] == [0, 1, 2, 3, 4]
    assert all(t["state"] == "Complete" for t in detail["trials"])
    assert detail["note"]["body"] == "a note the dashboard keeps in system attrs"
    best = min(study.trials, key=lambda t: t.value)
    assert [t["number"] for t in detail["best_trials"]] == [best.number]
