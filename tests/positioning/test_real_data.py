"""On the real scans: UCI "BLE RSSI Dataset for Indoor localization and Navigation"
(M. Mohammadi, A. Al-Fuqaha, Western Michigan University; CC BY 4.0; DOI 10.24432/C54G80).

Split by recording day, never at random; the held-out figures are computed here, not written in.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.positioning.dataset import DatasetError, day_of, read_survey
from edge_agent.positioning.evaluate import compare, leave_one_day_out, split_day

DATA = Path("/work/shared/data/ble-rssi-uci/train.csv")
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} not on this machine")


@needs_data
def test_day_split_ours_beats_knn_at_p90() -> None:
    survey = read_survey(DATA)
    assert len(survey) == 820 and len(survey.beacons) == 13
    res = leave_one_day_out(survey)
    assert len(res["folds"]) >= 5
    pooled = res["pooled"]
    ours, knn, per_cell = pooled["ours"], pooled["knn_baseline"], pooled["per_cell_model"]
    assert ours["scans"] == knn["scans"] == 820
    # Margins inside what the figures give (BENCHMARKS.md: 3.43 against 4.37 at p90, 1.71
    # against 2.16 at p50), so noise does not flip them but losing the gain does.
    assert ours["p90_cells"] <= knn["p90_cells"] - 0.5
    assert ours["p50_cells"] <= knn["p50_cells"] - 0.3
    # The per-cell model it replaced (1.90 / 3.80), on the same folds.
    assert ours["p50_cells"] < per_cell["p50_cells"] and ours["p90_cells"] < per_cell["p90_cells"]
    beats = 0
    for fold in res["folds"].values():  # no fold trains on the day it is scored on
        assert fold["ours"]["scans"] == fold["knn_baseline"]["scans"] > 0
        beats += fold["ours"]["p90_cells"] < fold["knn_baseline"]["p90_cells"]
    assert beats >= 8  # of 10 days (9 in BENCHMARKS.md; 2016-07-21 hears a beacon no other does)


@needs_data
def test_a_day_whose_cells_others_surveyed_meets_the_goal() -> None:
    survey = read_survey(DATA)
    train, test = split_day(survey, "2016-09-21")
    res = {name: s.summary() for name, s in compare(train, test).items()}
    assert res["ours"]["p90_cells"] <= 2.5 and res["ours"]["p50_cells"] <= 1.25
    assert res["ours"]["p90_cells"] <= res["knn_baseline"]["p90_cells"] - 1.0


@needs_data
def test_cli_eval_on_a_held_out_day(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["position", "eval", "--train", str(DATA), "--test-date", "9-21-2016"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["test"]["days"] == ["2016-09-21"] and "2016-09-21" not in out["train"]["days"]
    for name in ("ours", "knn_baseline"):
        assert set(out[name]) >= {"p50_cells", "p90_cells", "exact", "scans"}
        assert out[name]["scans"] == out["test"]["scans"] == 74
    assert "CC BY 4.0" in out["data"]


@needs_data
def test_cli_eval_train_and_test_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = DATA.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    test_rows = [r for r in rows if r.split(",")[1].startswith("9-19-2016")]
    (tmp_path / "train.csv").write_text(
        "\n".join([header, *(r for r in rows if r not in test_rows)])
    )
    (tmp_path / "test.csv").write_text("\n".join([header, *test_rows]))
    argv = ["position", "eval", "--train", str(tmp_path / "train.csv")]
    assert main([*argv, "--test", str(tmp_path / "test.csv")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ours"]["scans"] == len(test_rows) == out["knn_baseline"]["scans"]


@needs_data
def test_cli_locate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"b3001": -70, "b3002": -200}'))
    assert main(["position", "locate", "--train", str(DATA)]) == 0
    got = json.loads(capsys.readouterr().out)
    assert set(got) == {"label", "x", "y", "level", "confidence", "method"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"b9999": -70}'))
    assert main(["position", "locate", "--train", str(DATA)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown beacon id 'b9999'" in err


def test_bad_files_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("location,date,b1\nO02,4-19-2016 10:58,-60\nO03,4-19-2016 10:59,loud\n")
    with pytest.raises(DatasetError, match="line 3: b1: 'loud' is not a number"):
        read_survey(bad)
    assert main(["position", "eval", "--train", str(bad), "--test-date", "4-19-2016"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 3" in err
    assert main(["position", "eval", "--train", str(tmp_path / "none.csv"), "--split-by-date"]) == 2
    assert day_of("4-19-2016 10:58") == "2016-04-19"
