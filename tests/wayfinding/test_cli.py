"""`edge-agent map ...` through the real command line: output, stderr and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import pytest

from edge_agent.cli import main

from .conftest import DEMO_PLAN, REPO


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imdf") / "northwind.zip"
    assert main(["map", "author", str(DEMO_PLAN), "--out", str(out)]) == 0
    return out


def test_author_then_check_counts_features(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with zipfile.ZipFile(archive) as zf:
        assert "manifest.json" in zf.namelist() and "unit.geojson" in zf.namelist()
    capsys.readouterr()
    assert main(["map", "check", str(archive)]) == 0
    out = capsys.readouterr().out
    assert (
        "2 level" in out and "9 opening" in out and "10 unit" in out and "OK (0 warning(s))" in out
    )


def test_check_errors_exit_2_warnings_exit_0(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imdf"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(folder)
    (folder / "elevators.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    assert main(["map", "check", str(folder)]) == 0
    assert "warning: elevators.geojson: not an IMDF feature type" in capsys.readouterr().err
    units = json.loads((folder / "unit.geojson").read_text())
    units["features"][0]["properties"]["level_id"] = "99"
    (folder / "unit.geojson").write_text(json.dumps(units))
    assert main(["map", "check", str(folder)]) == 2
    err = capsys.readouterr().err
    assert f"error: unit {units['features'][0]['id']}: level_id: 99 is not a level" in err


def test_route_prints_json(archive: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "map",
            "route",
            str(archive),
            "--from",
            "screen:screen-entrance",
            "--to",
            "Gang 6",
            "--lang",
            "de",
        ]
    )
    assert code == 0
    r = json.loads(capsys.readouterr().out)
    assert r["distance_m"] > 20 and r["uses"] == ["stairs"]
    assert [lv["name"] for lv in r["levels"]] == ["Erdgeschoss", "Obergeschoss"]
    assert r["steps"][-1]["kind"] == "arrive" and "Gang 6" in r["steps"][-1]["text"]
    code = main(
        ["map", "route", str(DEMO_PLAN), "--from", "kiosk:kiosk-1", "--to", "WC", "--accessible"]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["uses"] == ["elevator"]


def test_no_route_is_one_line_on_stderr_and_exit_1(
    archive: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["map", "route", str(archive), "--from", "screen:screen-entrance", "--to", "Lager"])
        == 1
    )
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1 and "staff only" in cap.err
    assert main(["map", "route", str(archive), "--from", "nowhere", "--to", "Lager"]) == 1
    assert "nowhere: no feature" in capsys.readouterr().err


def test_a_broken_plan_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.toml"
    plan.write_text(
        DEMO_PLAN.read_text()
        .replace('level = "L1"', 'level = "L2"', 1)
        .replace('layout = "../firmware_configs', f'layout = "{REPO}/firmware_configs')
    )
    assert main(["map", "check", str(plan)]) == 2
    assert "level: unknown level 'L2'" in capsys.readouterr().err


def test_render_writes_the_png(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "route.png"
    args = ["--from", "screen:screen-entrance", "--to", "Pickup", "--out", str(out)]
    assert main(["map", "render", str(archive), *args, "--size", "800x600"]) == 0
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (600, 800, 3)


def test_the_installed_command_exit_codes(archive: Path) -> None:
    """The console script itself, in its own process (argument parsing, stdout, exit status)."""
    cmd = [sys.executable, "-m", "edge_agent.cli", "map", "route", str(archive)]
    ok = subprocess.run(
        [*cmd, "--from", "Entrance", "--to", "Fitting rooms"], capture_output=True, text=True
    )
    assert ok.returncode == 0 and json.loads(ok.stdout)["distance_m"] > 10
    no = subprocess.run(
        [*cmd, "--from", "Entrance", "--to", "Stock room"], capture_output=True, text=True
    )
    assert no.returncode == 1 and no.stdout == "" and len(no.stderr.splitlines()) == 1
