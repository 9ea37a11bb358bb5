"""Parallel raters lose or duplicate nothing; a writer killed mid-transaction leaves a consistent file."""

from __future__ import annotations

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import func, select

from human_eval_app.raters import create_invites, queue_state, start_queue, submit_answers
from human_eval_app.store import Judgment, Store

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("app_load", ROOT / "benchmarks" / "app_load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app_load"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_fifty_raters_in_parallel_store_exactly_a_thousand_judgments(store: Store) -> None:
    result = _load_benchmark().run_load(store, n_raters=50, per_rater=20)
    assert result.errors == []
    assert (result.stored, result.distinct, result.expected) == (1000, 1000, 1000)


_WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sqlalchemy import event
    from human_eval_app.store import Store
    from human_eval_app.raters import queue_state, submit_answers

    db, rater_id, marker = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    store = Store(db)

    @event.listens_for(store.engine, "after_cursor_execute")
    def pause_inside_second_submission(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO judgments") and marker.with_suffix(".first").exists():
            marker.write_text("inside the transaction")
            time.sleep(60)  # the test kills us here, before COMMIT

    for _ in range(2):
        state = queue_state(store, rater_id)
        submit_answers(store, rater_id, state.next_assignment_id, {"overall": "left", "sync": "right"}, 1.0)
        marker.with_suffix(".first").write_text("first submission committed")
""")


def test_writer_killed_mid_transaction_leaves_a_consistent_database(store: Store, make_study, tmp_path: Path) -> None:
    info = make_study().info
    invite = create_invites(store, info.id, 1)[0]
    start_queue(store, invite.rater_id)
    script, marker = tmp_path / "writer.py", tmp_path / "marker"
    script.write_text(_WRITER)
    db = str(tmp_path / "studies.db")
    proc = subprocess.Popen([sys.executable, str(script), db, str(invite.rater_id), str(marker)], cwd=ROOT)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, "the writer exited before reaching the second submission"
        assert time.monotonic() < deadline, "the writer never reached the second submission"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = conn.execute("SELECT assignment_id, count(*) FROM judgments GROUP BY assignment_id").fetchall()
    assert [n for _, n in counts] == [2]  # the committed submission whole, nothing of the killed one
    # the database stays usable and the interrupted pair can still be answered
    state = queue_state(store, invite.rater_id)
    assert (state.done, state.total) == (1, 2)
    submit_answers(store, invite.rater_id, state.next_assignment_id, {"overall": "tie", "sync": "tie"}, 1.0)
    with store.session() as s:
        assert s.scalar(select(func.count(Judgment.id))) == 4
