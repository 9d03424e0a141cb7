"""The Prometheus endpoint of a running agent (a real process, a real broker), and its logs."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import topics
from edge_agent.box.logs import JsonFormatter, RedactFilter, choose_format, setup_logging
from tests.app.test_agent_process import write_config

EXE = os.path.join(os.path.dirname(sys.executable), "edge-agent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    out[("__text__", ())] = text  # type: ignore[assignment]
    return out


def publish_retained(port: int, topic: str, body: dict) -> None:
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(topic, json.dumps(body), qos=1, retain=True).wait_for_publish(5)
    c.loop_stop()
    c.disconnect()


@pytest.mark.timeout(60)
def test_scrape_a_running_agent(tmp_path: Path, broker) -> None:
    port = free_port()
    cfg = write_config(tmp_path, broker.port, "box-metrics-1", speed=8.0)
    cfg.write_text(cfg.read_text() + f"\n[metrics]\nport = {port}\n")
    store = re.search(r'store_id = "([^"]+)"', cfg.read_text()).group(1)  # type: ignore[union-attr]
    # A player's retained state, as signage_ui publishes it (its fps comes from Kivy's clock).
    publish_retained(
        broker.port, topics.screen_state(store, "metrics-screen"), {"status": "online", "fps": 29.5}
    )
    proc = subprocess.Popen(
        [EXE, "run", "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        m: dict = {}
        while time.monotonic() < deadline:
            try:
                m = scrape(port)
            except OSError:
                time.sleep(0.2)
                continue
            if (
                m.get(("edge_agent_adverts_total", ()))
                and m.get(("edge_agent_ui_fps", (("screen", "metrics-screen"),)))
                and m.get(("edge_agent_adverts_per_second", ()), 0) > 0
            ):
                break
            time.sleep(0.3)
        assert m.get(("edge_agent_adverts_total", ()), 0) > 0, m.get(("__text__", ()))
        assert m[("edge_agent_adverts_per_second", ())] > 0
        assert m[("edge_agent_ui_fps", (("screen", "metrics-screen"),))] == 29.5
        assert m[("edge_agent_mqtt_connected", (("link", "central"),))] == 1
        assert m[("edge_agent_mqtt_connected", (("link", "bus"),))] == 1
        assert ("edge_agent_outbox_depth", ()) in m
        assert ("edge_agent_outbox_oldest_pending_seconds", ()) in m
        assert ("edge_agent_decisions_total", ()) in m
        assert m[("edge_agent_watchdog_healthy", ())] == 1
        zones = [k for k in m if k[0] == "edge_agent_zone_occupancy"]
        assert zones, "one occupancy series per configured zone"
        assert ("edge_agent_dropped_total", (("reason", "ble_decode_error"),)) in m
        # The log relay to central (box/log_relay.py) and what its bound held back.
        assert ("edge_agent_log_relayed_total", ()) in m
        assert ("edge_agent_log_suppressed_total", ()) in m
        # `edge-agent doctor` reads the same endpoint.
        from edge_agent.box.doctor import check_metrics
        from edge_agent.config import load_config

        check = check_metrics(load_config(cfg))
        assert check.status == "OK" and "central up" in check.detail, check
        text = m[("__text__", ())]
        # No personal data: no BLE address, no profile id, no token in any label or value.
        assert not re.search(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}", text, re.I)
        assert "cdp-p-" not in text
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    # Piped stderr is not a terminal: JSON lines, one object each.
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(json.loads(ln)["level"] for ln in lines)
    assert any("metrics: serving" in json.loads(ln)["msg"] for ln in lines)


def test_metrics_port_in_use_is_one_error_not_a_crash(caplog) -> None:
    from types import SimpleNamespace

    from edge_agent.box.metrics import start_metrics
    from edge_agent.config import MetricsConfig

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        agent = SimpleNamespace(cfg=SimpleNamespace(metrics=MetricsConfig(port=port)))
        with caplog.at_level(logging.ERROR, logger="edge_agent.box.metrics"):
            assert start_metrics(agent, supervisor=None) is None
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text


def test_config_rejects_a_bad_metrics_port(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, 1883, "box-metrics-3", speed=0)
    cfg.write_text(cfg.read_text() + "\n[metrics]\nport = 70000\nbind = 'x'\n")
    proc = subprocess.run([EXE, "config", "check", str(cfg)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "metrics.port" in proc.stderr and "metrics.bind" in proc.stderr


# ---- logs -----------------------------------------------------------------------------------
def test_log_format_choice(tmp_path: Path) -> None:
    assert choose_format(io.StringIO(), {}) == "json"
    assert choose_format(io.StringIO(), {"EDGE_AGENT_LOG_FORMAT": "text"}) == "text"
    with open(tmp_path / "f", "w") as fh:
        st = os.fstat(fh.fileno())
        assert choose_format(fh, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}) == "journald"
        assert choose_format(fh, {"JOURNAL_STREAM": "1:2"}) == "json"


def test_json_logs_are_one_line_with_priority_and_redacted() -> None:
    buf = io.StringIO()
    setup_logging(stream=buf, env={"EDGE_AGENT_LOG_FORMAT": "json"})
    log = logging.getLogger("edge_agent.test")
    log.warning("seen C0:FF:EE:00:64:01 with token %s", "f7826da64fa24e988024bc5b71e0893e")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    logging.getLogger().removeHandler(
        next(h for h in logging.getLogger().handlers if h.get_name() == "edge-agent")
    )
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["level"] == "warning" and first["msg"] == "seen <addr> with token <hex>"
    assert "boom" in json.loads(lines[1])["exc"]
    rec = logging.LogRecord("x", logging.ERROR, "f", 1, "bad", None, None)
    assert JsonFormatter(journald=True).format(rec).startswith("<3>{")
    assert RedactFilter().filter(rec)
