"""`edge-agent position eval|locate`: score the positioning on a labelled survey, or answer a scan.

``eval --train A.csv --test B.csv`` trains on one file and scores the other; ``--test-date DAY``
holds one recording day of ``--train`` out instead; ``--split-by-date`` holds out each day in
turn (folds and pooled). ``--grid`` picks the model's settings by a small search on the training
days only (leave one training day out), never looking at the test scans. JSON on stdout; a bad
file or option: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PROG = "edge-agent position"
CITATION = (
    "BLE RSSI Dataset for Indoor localization and Navigation, M. Mohammadi, A. Al-Fuqaha, "
    "UCI Machine Learning Repository, CC BY 4.0, DOI 10.24432/C54G80"
)


def register(subparsers: Any) -> None:
    grp = subparsers.add_parser("position", help="positioning from phone scans (issue 16)")
    sub = grp.add_subparsers(dest="position_command", required=True)

    ev = sub.add_parser("eval", help="ours against the kNN baseline on labelled scans (JSON)")
    ev.add_argument("--train", required=True, help="survey CSV: location,date,<beacon ids>")
    how = ev.add_mutually_exclusive_group(required=True)
    how.add_argument("--test", help="survey CSV scored with the model trained on --train")
    how.add_argument("--test-date", help="hold this day of --train out (YYYY-MM-DD or M-D-YYYY)")
    how.add_argument(
        "--split-by-date", action="store_true", help="hold out each day of --train in turn"
    )
    ev.add_argument(
        "--grid", action="store_true", help="choose settings on the training days only (slower)"
    )
    ev.add_argument("--min-scans", type=int, default=20, help="--split-by-date: smallest fold")
    ev.set_defaults(func=cmd_eval)

    lo = sub.add_parser("locate", help="one scan (JSON object on stdin) -> a position (JSON)")
    lo.add_argument("--train", required=True, help="survey CSV the model is trained on")
    lo.set_defaults(func=cmd_locate)


def _fail(msg: str) -> int:
    print(f"{PROG}: {msg}", file=sys.stderr)
    return 2


def _day(text: str) -> str:
    from edge_agent.positioning.dataset import day_of

    t = text.strip()
    if len(t) == 10 and t[4] == "-" and t[7] == "-":
        return t
    return day_of(t)


def cmd_eval(args: argparse.Namespace) -> int:
    from edge_agent.positioning.dataset import DatasetError, read_survey
    from edge_agent.positioning.evaluate import compare, grid_search, leave_one_day_out, split_day

    try:
        train = read_survey(args.train)
        test = read_survey(args.test) if args.test else None
        if args.test_date:
            train, test = split_day(train, _day(args.test_date))
    except (DatasetError, ValueError) as exc:
        return _fail(str(exc))
    out: dict[str, Any] = {"data": CITATION}
    if args.split_by_date:
        # Each fold chooses its settings on its own training days when --grid is given.
        out.update(leave_one_day_out(train, min_scans=args.min_scans, tune=args.grid))
        print(json.dumps(out, indent=2))
        return 0
    assert test is not None
    params, motion, searched = grid_search(train) if args.grid else (None, None, None)
    res = compare(train, test, params, motion)
    out["train"] = {"scans": len(train), "days": train.day_list()}
    out["test"] = {"scans": len(test), "days": test.day_list()}
    out.update({name: s.summary() for name, s in res.items()})
    if searched is not None:
        out["grid"] = searched
    print(json.dumps(out, indent=2))
    return 0


def cmd_locate(args: argparse.Namespace) -> int:
    from edge_agent.positioning.dataset import DatasetError, read_survey
    from edge_agent.positioning.positioner import Positioner
    from edge_agent.positioning.scan import ScanError

    try:
        pos = Positioner.from_survey(read_survey(args.train))
    except (DatasetError, ValueError) as exc:
        return _fail(str(exc))
    try:
        scan = json.loads(sys.stdin.read())
    except json.JSONDecodeError as exc:
        return _fail(f"scan: not JSON: {exc.msg} at line {exc.lineno}")
    try:
        answer = pos.locate(scan)
    except ScanError as exc:
        return _fail(str(exc))
    print(json.dumps(answer.as_dict()))
    return 0
