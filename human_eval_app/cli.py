"""`avgen study ...` (create, list, invite, export, close/open, admins) and `avgen app` (start the app)."""

from __future__ import annotations

import argparse
import getpass
import os
import subprocess
import sys
from pathlib import Path

from avio import MediaError

from .auth import ADMIN_ENV_HASH, ADMIN_ENV_PASSWORD, AccessError, admin_configured, hash_password
from .errors import StudyError
from .store import DEFAULT_DB_URL, Store, StoreError, open_store

__all__ = ["study_main", "app_main"]

_DB_HELP = (f"database URL: sqlite:///path.db or postgresql://user:pass@host/db (default: $AVGEN_DB_URL, "
            f"else {DEFAULT_DB_URL})")
_MEDIA_HELP = ("folder of the registered clips (default: $AVGEN_MEDIA_DIR, else the one the database recorded, "
               "else media/ next to a SQLite file); required once for PostgreSQL")


def _db_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default=None, help=_DB_HELP)
    p.add_argument("--media-dir", default=None, help=_MEDIA_HELP)


def _open(args: argparse.Namespace) -> Store:
    return open_store(args.db, media_dir=args.media_dir)


def _study_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen study",
        description="Human evaluation studies: pairwise comparisons of clips from two or more systems.",
        epilog="Start the app with `avgen app`; docs/human_eval.md walks through a whole study.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("create", help="create a study from a spec YAML (see configs/study/demo.yaml)",
                       description="Create a study: match the systems' clips by prompt, encode every clip (and the "
                                   "gold pairs' copies) the same way, make gold pairs. A clip that cannot be used "
                                   "is skipped with its reason; the pairs that need it are left out.")
    p.add_argument("spec", help="study spec YAML; relative paths in it are from the file's folder")
    p.add_argument("--strict", action="store_true",
                   help="create nothing (and exit 1) if any clip has to be skipped; encoded clips are kept for the rerun")
    _db_args(p)

    p = sub.add_parser("list", help="list the studies with their codes and progress")
    _db_args(p)

    p = sub.add_parser("invite", help="create personal invite links for raters and print them")
    p.add_argument("study", help="study name, code or id")
    p.add_argument("--n", type=int, default=5, help="number of links (default 5)")
    p.add_argument("--names", default=None, help="comma-separated rater names, one link each (instead of --n)")
    p.add_argument("--days", type=float, default=None, help="days the links stay valid (default: the study's token_days)")
    p.add_argument("--base-url", default=os.environ.get("AVGEN_PUBLIC_URL", "http://localhost:8501"),
                   help="the app's address as raters reach it (default: $AVGEN_PUBLIC_URL or http://localhost:8501)")
    _db_args(p)

    p = sub.add_parser("export", help="write a study's judgments as CSV or Parquet")
    p.add_argument("study", help="study name, code or id")
    p.add_argument("--format", choices=["csv", "parquet"], default=None, help="default: from --out's suffix")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--all-gold-rows", action="store_true",
                   help="also export answers on gold pairs to questions without a known answer")
    _db_args(p)

    for name, text in (("close", "stop a study taking raters and answers"), ("open", "reopen a closed study")):
        p = sub.add_parser(name, help=text)
        p.add_argument("study", help="study name, code or id")
        _db_args(p)

    p = sub.add_parser("progress", help="print a study's progress per rater")
    p.add_argument("study", help="study name, code or id")
    _db_args(p)

    sub.add_parser("hash-password", help=f"hash an admin password for {ADMIN_ENV_HASH} or secrets.toml",
                   description="Reads the password twice (or once from standard input when it is not a terminal) "
                               "and prints its scrypt hash.")

    p = sub.add_parser("add-admin", help="add a named admin (password read from the terminal or standard input)")
    p.add_argument("name", help="the admin's name")
    _db_args(p)
    return parser


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise ValueError("the two passwords differ")
    return first


def _create(args: argparse.Namespace) -> int:
    from .spec import load_spec
    from .studies import create_study

    spec = load_spec(args.spec)
    store = _open(args)

    def progress(done: int, total: int, message: str) -> None:
        print(f"[{done}/{total}] {message}", flush=True)  # each clip's result as it completes

    created = create_study(store, spec, progress=progress, strict=args.strict)
    info = created.info
    print(f"created study {info.name!r} (id {info.id}, code {info.code})")
    print(f"  systems: {', '.join(info.systems)} (model: {info.model}); {info.n_prompts} prompts, {info.n_pairs} pairs, "
          f"{info.n_gold} gold pairs; {created.transcoded} clips converted from formats browsers cannot play, "
          f"{created.reused} encoded copies reused")
    print(f"  {info.raters_per_pair} raters per pair, {info.pairs_per_rater} pairs per rater: about "
          f"{info.raters_needed} raters needed")
    for system, n in created.unmatched.items():
        if n:
            print(f"  note: {n} clips of {system!r} have no match in every system and were left out")
    if created.skipped:
        print(f"  skipped {len(created.skipped)} clips (their pairs were left out):")
        for item in created.skipped:
            print(f"    {item}")
    print(f"next: `avgen study invite {info.code} --n {info.raters_needed}` or let raters join with code {info.code}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from .studies import list_studies, study_progress

    store = _open(args)
    studies = list_studies(store)
    if not studies:
        print(f"no studies in {store.display_url}; create one with `avgen study create spec.yaml`")
        return 0
    header = f"{'id':>3}  {'code':8}  {'status':6}  {'pairs':>5}  {'gold':>4}  {'raters':>6}  {'done':>6}  name (systems)"
    print(header)
    for s in studies:
        p = study_progress(store, s.id)
        print(f"{s.id:>3}  {s.code:8}  {s.status:6}  {s.n_pairs:>5}  {s.n_gold:>4}  {len(p.raters):>6}  "
              f"{p.fraction:>6.0%}  {s.name} ({', '.join(s.systems)})")
    return 0


def _invite(args: argparse.Namespace) -> int:
    from .raters import create_invites

    store = _open(args)
    names = [n.strip() for n in args.names.split(",") if n.strip()] if args.names else None
    invites = create_invites(store, args.study, args.n, names=names, days=args.days)
    print(f"{len(invites)} personal links (each shown only now; valid until {invites[0].expires_at:%Y-%m-%d %H:%M} UTC):")
    for inv in invites:
        print(f"{inv.name}\t{inv.link(args.base_url)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .studies import export_judgments, judgments_frame

    store = _open(args)
    path = export_judgments(store, args.study, args.out, args.format, all_gold_rows=args.all_gold_rows)
    n = len(judgments_frame(store, args.study, all_gold_rows=args.all_gold_rows))
    print(f"wrote {n} judgments to {path}")
    return 0


def _progress(args: argparse.Namespace) -> int:
    from .studies import get_study, study_progress

    store = _open(args)
    info, p = get_study(store, args.study), study_progress(store, args.study)
    print(f"{info.name} ({info.code}, {info.status}): {p.ratings_done}/{p.ratings_target} ratings, "
          f"{p.pairs_complete}/{p.n_pairs} pairs complete, {p.n_judgments} judgments, {len(p.raters)} raters")
    if len(p.raters):
        print(p.raters.to_string(index=False))
    return 0


def study_main(argv: list[str]) -> int:
    """`avgen study`: see `avgen study --help`."""
    args = _study_parser().parse_args(argv)
    try:
        if args.cmd == "create":
            return _create(args)
        if args.cmd == "list":
            return _list(args)
        if args.cmd == "invite":
            return _invite(args)
        if args.cmd == "export":
            return _export(args)
        if args.cmd == "progress":
            return _progress(args)
        if args.cmd in ("open", "close"):
            from .studies import set_status

            info = set_status(_open(args), args.study, "open" if args.cmd == "open" else "closed")
            print(f"study {info.name!r} is now {info.status}")
            return 0
        if args.cmd == "hash-password":
            print(hash_password(_read_password()))
            return 0
        if args.cmd == "add-admin":
            from .studies import add_admin

            add_admin(_open(args), args.name, _read_password())
            print(f"admin {args.name!r} can now sign in with that password")
            return 0
    except (StudyError, MediaError, StoreError, AccessError, ValueError) as err:
        print(f"avgen study {args.cmd}: {err}", file=sys.stderr)
        return 1
    raise AssertionError(args.cmd)


def _app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avgen app",
        description="Start the human evaluation app (Streamlit) on this machine. Raters open their invite "
                    "link or the address with ?study=CODE; leads open /studies and /dashboard and sign in with "
                    f"the admin password (${ADMIN_ENV_HASH} or ${ADMIN_ENV_PASSWORD}).",
    )
    _db_args(parser)
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="localhost",
                        help="address to listen on (default localhost; use 0.0.0.0 behind a reverse proxy only)")
    parser.add_argument("--public-url", default=os.environ.get("AVGEN_PUBLIC_URL"),
                        help="the address raters reach the app at, used in invite links (default: the page's host)")
    return parser


def app_main(argv: list[str]) -> int:
    """`avgen app`: run `streamlit run human_eval_app/app.py` headless and print where to find it."""
    args = _app_parser().parse_args(argv)
    if not 1 <= args.port <= 65535:
        print(f"avgen app: --port must be in 1..65535; got {args.port}", file=sys.stderr)
        return 2
    try:
        store = _open(args)  # fail here, with the reason, rather than in the browser
    except StoreError as err:
        print(f"avgen app: {err}", file=sys.stderr)
        return 1
    env = dict(os.environ, AVGEN_DB_URL=store.url)
    if store.media_dir is not None:
        env["AVGEN_MEDIA_DIR"] = str(store.media_dir)
    if args.public_url:
        env["AVGEN_PUBLIC_URL"] = args.public_url
    named_admins = _has_named_admins(store)
    store.dispose()
    try:
        password_set = admin_configured(None)
    except ValueError as err:  # a configured admin password that is too short
        print(f"avgen app: {err}; set a longer one (or {ADMIN_ENV_HASH} from `avgen study hash-password`)",
              file=sys.stderr)
        return 1
    app = Path(__file__).with_name("app.py")
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.port", str(args.port), "--server.address", args.address,
           "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--client.toolbarMode", "viewer"]
    url = f"http://{'localhost' if args.address in ('0.0.0.0', '::') else args.address}:{args.port}"
    print(f"human evaluation app on {url}  (database {store.display_url})")
    print(f"  raters: their invite link (`avgen study invite STUDY`) or {url}/?study=CODE")
    print(f"  leads:  {url}/studies and {url}/dashboard, with the admin password")
    if not password_set and not named_admins:
        print(f"  note: no admin password is set, so the lead pages stay closed; set {ADMIN_ENV_HASH} "
              "(`avgen study hash-password`) or add a named admin (`avgen study add-admin NAME`)")
    print("  stop with Ctrl-C")
    sys.stdout.flush()
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def _has_named_admins(store: Store) -> bool:
    from .studies import admin_hashes

    return bool(admin_hashes(store))
