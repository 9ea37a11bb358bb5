"""Load test of the study storage: many raters joining and answering at once.

50 raters (threads) join a study with its code at the same moment, then each answers 20 pairs
through the same calls the rate page makes (queue state, load the item, submit). Afterwards the
database must hold exactly raters x judgments judgments, none lost or duplicated. Prints a table of
latencies and writes benchmarks/results/app_load.json.

    python benchmarks/app_load.py                 # 50 raters x 20 judgments on a temporary SQLite file
    python benchmarks/app_load.py --quick         # 10 x 5, a smoke run
    python benchmarks/app_load.py --db postgresql://user@localhost/bench
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._host import write_json  # noqa: E402
from human_eval_app.raters import join_with_code, load_item, queue_state, start_queue, submit_answers  # noqa: E402
from human_eval_app.store import Judgment, Pair, Prompt, Sample, Store, Study, System  # noqa: E402


@dataclass
class LoadResult:
    """What one load run measured and checked."""

    database: str
    raters: int
    judgments_per_rater: int
    expected: int
    stored: int
    distinct: int
    errors: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    join_ms: dict[str, float] = field(default_factory=dict)
    submit_ms: dict[str, float] = field(default_factory=dict)
    judgments_per_second: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors and self.stored == self.distinct == self.expected


def seed_study(store: Store, n_pairs: int, raters_per_pair: int, pairs_per_rater: int) -> str:
    """A one-question study of `n_pairs` pairs, written directly (the media are not under test)."""
    with store.write() as s:
        study = Study(name=f"load-{time.time_ns()}", code=f"L{time.time_ns() % 10**9:09d}"[:12],
                      questions_json=json.dumps([{"key": "overall", "text": "Which is better?", "scale": "pairwise"}]),
                      spec_json="{}", raters_per_pair=raters_per_pair, pairs_per_rater=pairs_per_rater)
        s.add(study)
        s.flush()
        a = System(study_id=study.id, name="model", role="model")
        b = System(study_id=study.id, name="baseline", role="baseline")
        s.add_all([a, b])
        s.flush()
        for i in range(n_pairs):
            prompt = Prompt(study_id=study.id, key=f"p{i}", text=f"prompt {i}")
            s.add(prompt)
            s.flush()
            samples = [Sample(study_id=study.id, system_id=sys_.id, prompt_id=prompt.id, media_path=f"x/{i}-{k}.mp4",
                              original_path="-", sha256="0" * 64, size_bytes=0, duration=1.0, width=2, height=2,
                              has_audio=False) for k, sys_ in enumerate((a, b))]
            s.add_all(samples)
            s.flush()
            s.add(Pair(study_id=study.id, prompt_id=prompt.id, sample_a_id=samples[0].id, sample_b_id=samples[1].id))
        return study.code


def _summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    ordered = sorted(ms)
    return {"p50": statistics.median(ordered), "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
            "max": ordered[-1], "mean": statistics.fmean(ordered)}


def run_load(store: Store, n_raters: int = 50, per_rater: int = 20, raters_per_pair: int = 5) -> LoadResult:
    """Run the load test against `store` and check the stored judgments."""
    n_pairs = -(-n_raters * per_rater // raters_per_pair)
    code = seed_study(store, n_pairs, raters_per_pair, per_rater)
    join_ms: list[float] = []
    submit_ms: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(n_raters)

    def rater(k: int) -> None:
        try:
            barrier.wait()
            t0 = time.perf_counter()
            ctx, _ = join_with_code(store, code, f"rater {k}")
            start_queue(store, ctx.rater_id)
            t1 = time.perf_counter()
            times = []
            for _ in range(per_rater):
                t = time.perf_counter()
                state = queue_state(store, ctx.rater_id)
                if state.next_assignment_id is None:
                    raise RuntimeError(f"rater {k} ran out of pairs after {state.done}")
                item = load_item(store, ctx.rater_id, state.next_assignment_id)
                submit_answers(store, ctx.rater_id, item.assignment_id, {"overall": ("left", "tie", "right")[k % 3]}, 1.0)
                times.append(1000 * (time.perf_counter() - t))
            with lock:
                join_ms.append(1000 * (t1 - t0))
                submit_ms.extend(times)
        except Exception as err:  # every failure is reported, none may pass silently
            with lock:
                errors.append(f"rater {k}: {type(err).__name__}: {err}")

    threads = [threading.Thread(target=rater, args=(k,)) for k in range(n_raters)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    with store.session() as s:
        study_id = s.scalar(select(Study.id).where(Study.code == code))
        stored = s.scalar(select(func.count(Judgment.id)).where(Judgment.study_id == study_id))
        distinct = s.scalar(select(func.count()).select_from(
            select(Judgment.assignment_id, Judgment.question).where(Judgment.study_id == study_id).distinct().subquery()))
    return LoadResult(
        database=store.dialect, raters=n_raters, judgments_per_rater=per_rater, expected=n_raters * per_rater,
        stored=stored or 0, distinct=distinct or 0, errors=errors, wall_seconds=wall,
        join_ms=_summary(join_ms), submit_ms=_summary(submit_ms),
        judgments_per_second=(stored or 0) / wall if wall else 0.0,
    )


def _table(r: LoadResult) -> str:
    rows = [
        ("database", r.database),
        ("raters x judgments", f"{r.raters} x {r.judgments_per_rater} = {r.expected}"),
        ("judgments stored / distinct", f"{r.stored} / {r.distinct}"),
        ("errors", str(len(r.errors))),
        ("wall time", f"{r.wall_seconds:.2f} s"),
        ("throughput", f"{r.judgments_per_second:.0f} judgments/s"),
        ("join + queue (p50 / p95 / max)", " / ".join(f"{r.join_ms.get(k, float('nan')):.0f} ms" for k in ("p50", "p95", "max"))),
        ("one pair: state+item+submit (p50 / p95 / max)",
         " / ".join(f"{r.submit_ms.get(k, float('nan')):.0f} ms" for k in ("p50", "p95", "max"))),
        ("result", "OK" if r.ok else "FAILED"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=None, help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--judgments", type=int, default=20, help="judgments per rater")
    parser.add_argument("--quick", action="store_true", help="10 raters x 5 judgments")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "app_load.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.raters, args.judgments = 10, 5
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or Path(tmp) / "load.db", media_dir=Path(tmp) / "media")
        result = run_load(store, args.raters, args.judgments)
        store.dispose()
    print(_table(result))
    for e in result.errors[:10]:
        print("  " + e)
    record = asdict(result) | {
        "ok": result.ok, "command": "python benchmarks/app_load.py " + " ".join(argv or sys.argv[1:]),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor(), "load_average_1min": os.getloadavg()[0]},
    }
    write_json(args.out, record)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
