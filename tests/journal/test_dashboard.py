"""optuna-dashboard serves a journal: its own WSGI app called as a server would call it, and
``optuna-journal dashboard`` run as a user runs it, seen through its API and a real browser."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
from pathlib import Path
import re
import socket
import subprocess
import sys
import time
from typing import Any
import urllib.request
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard

from optuna_journal import FileBackend, JournalStorage, open_storage
from tests import browser, workers


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


class _Dashboard:
    """``optuna-journal dashboard JOURNAL --port 0`` as a subprocess: its URL from the line it
    prints first."""

    def __init__(self, journal: str, port: int = 0) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optuna_journal.cli",
                "dashboard",
                journal,
                "--port",
                f"{port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def url(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r" at (http://\S+/dashboard/) ", line)
        assert found, (line, self.process.stderr.read() if self.process.poll() is not None else "")
        return found.group(1)

    def close(self) -> None:
        self.process.kill()
        self.process.communicate(timeout=30)


def _fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_dashboard_command_shows_trials_a_running_worker_appends(tmp_path: Path) -> None:
    journal = str(tmp_path / "s.journal")
    optuna.create_study(storage=open_storage(journal), study_name="live")
    writer = multiprocessing.get_context("spawn").Process(
        target=workers.publish_trials, args=(journal, "live", 400, str(tmp_path / "told"))
    )
    dashboard = _Dashboard(journal)
    writer.start()
    try:
        api = dashboard.url().replace("/dashboard/", "/api/studies")
        listed = _fetch(api)["study_summaries"]
        assert [(s["study_id"], s["study_name"]) for s in listed] == [(0, "live")]
        counts = [len(_fetch(f"{api}/0")["trials"])]
        deadline = time.monotonic() + 90
        # optuna-dashboard caches a running study's trials for up to 10 s.
        while counts[-1] <= counts[0] + 10:
            assert time.monotonic() < deadline and writer.is_alive(), counts
            time.sleep(0.5)
            counts.append(len(_fetch(f"{api}/0")["trials"]))
        assert counts == sorted(counts)
    finally:
        writer.kill()
        writer.join(30)
        dashboard.close()


def test_dashboard_command_on_a_taken_port_says_so(tmp_path: Path) -> None:
    journal = str(tmp_path / "s.journal")
    optuna.create_study(storage=open_storage(journal), study_name="s")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dashboard = _Dashboard(journal, port)
        _, err = dashboard.process.communicate(timeout=120)
    assert dashboard.process.returncode == 1
    assert err == (
        f"optuna-journal dashboard: error: [Errno {errno.EADDRINUSE}] port {port} on "
        "127.0.0.1 is taken by another server; pick another with --port\n"
    )


def test_dashboard_page_in_a_real_browser_shows_the_study_and_its_plot(tmp_path: Path) -> None:
    journal = str(tmp_path / "s.journal")
    study = optuna.create_study(storage=open_storage(journal), study_name="seen-in-chromium")
    study.optimize(workers.quadratic, n_trials=20)
    dashboard = _Dashboard(journal)
    try:
        url = dashboard.url()
        with browser.chromium(tmp_path / "profile") as session:
            session.get(f"{url}studies/0")
            browser.wait_for_text(session, "seen-in-chromium")
            browser.wait_for_plot(session, "plot-history")
            session.save_screenshot(str(tmp_path / "dashboard.png"))
    finally:
        dashboard.close()
    assert (tmp_path / "dashboard.png").stat().st_size > 10_000
