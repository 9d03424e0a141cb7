"""Every MQTT topic name in one place, so agent, player, ops and CDP never drift apart.

Central broker (TLS, per-device credentials; a device may only publish under its own store):
  stores/<store>/devices/<device>/events      uplink batches of CloudEvents (QoS 1)
  stores/<store>/devices/<device>/state       retained birth / last will ("online"/"offline")
  stores/<store>/devices/<device>/health      heartbeat
  stores/<store>/devices/<device>/acks        downlink acknowledgements with a reason
  stores/<store>/devices/<device>/screens/<s> retained: what screen <s> shows (the player's
                                              state as the box relays it; ops see who obeys)
  stores/<store>/devices/<device>/live        retained: people per zone, open staff alerts
  stores/<store>/devices/<device>/screenshots/<s>  a screenshot ops asked for (JSON, JPEG)
  stores/<store>/devices/<device>/cmd/<kind>  signed downlink for one device
  stores/<store>/cmd/<kind>                   signed downlink for every device of a store

In-store bus (local mosquitto, loopback or store LAN):
  instore/<store>/screens/<screen>/cmd        agent -> player: what to show now
  instore/<store>/screens/<screen>/events     player -> agent: impressions (CloudEvents)
  instore/<store>/screens/<screen>/state      player, retained: online/offline, current item, fps
  instore/<store>/screens/<screen>/errors     player: asset missing/corrupt, bad playlist (JSON)
  instore/<store>/screens/<screen>/screenshot player -> ops: downscaled JPEG on request (JSON)
  instore/<store>/emergency                   kiosk/ops, retained: override or clear on every screen
  instore/<store>/alert-acks                  kiosk -> agent and other kiosks: alert acknowledged
  instore/<store>/zones/<zone>/occupancy      agent, retained: live occupancy for kiosks
  instore/<store>/alerts/<alert>              agent, retained: one open staff alert; an empty
                                              retained payload when it is closed (acked, expired)
  instore/<store>/pos                         till bridges -> agent: receipts (JSON lines)
  instore/<store>/kiosks/<kiosk>/events       kiosk -> agent: survey answers (CloudEvents)
  instore/<store>/kiosks/<kiosk>/find         kiosk -> agent: product finder request
  instore/<store>/kiosks/<kiosk>/found        agent -> kiosk: results and the way (not retained)
  instore/<store>/kiosks/<kiosk>/state        kiosk: a finder reply drawn, request id and timings
  instore/<store>/touches/<device>            agent -> agents: offers its screens showed (QoS 1)
  instore/<store>/touches/<device>/window     agent, retained: its touches of the window
  instore/<store>/ble/<node>/adverts          ESP32 scanner node -> agent: one advert per message
  instore/<store>/zones/<zone>/mmwave/<node>  ESP32 mmWave node -> agent, retained: ON/OFF
  instore/<store>/nodes/<node>/status         ESP32 node, retained: online/offline (ESPHome's
                                              birth and last will)
  instore/<store>/walk/cmd                    kiosk -> agent: a walk survey's start, taps, stop
  instore/<store>/walk/state                  agent, retained: the walk it records (for kiosks)
"""

from __future__ import annotations


def device_base(store_id: str, device_id: str) -> str:
    return f"stores/{store_id}/devices/{device_id}"


def events(store_id: str, device_id: str) -> str:
    return f"{device_base(store_id, device_id)}/events"


def state(store_id: str, device_id: str) -> str:
    return f"{device_base(store_id, device_id)}/state"


def health(store_id: str, device_id: str) -> str:
    return f"{device_base(store_id, device_id)}/health"


def acks(store_id: str, device_id: str) -> str:
    return f"{device_base(store_id, device_id)}/acks"


def delivered(store_id: str, device_id: str) -> str:
    """CDP -> device: the event ids the CDP has durably stored (end-to-end confirmation)."""
    return f"{device_base(store_id, device_id)}/delivered"


def device_cmd(store_id: str, device_id: str, kind: str = "+") -> str:
    return f"{device_base(store_id, device_id)}/cmd/{kind}"


def store_cmd(store_id: str, kind: str = "+") -> str:
    return f"stores/{store_id}/cmd/{kind}"


# The CDP consumes every store with an MQTT 5 shared subscription so consumers scale out.
ALL_EVENTS = "stores/+/devices/+/events"


def shared(group: str, topic: str) -> str:
    return f"$share/{group}/{topic}"


def screen_cmd(store_id: str, screen_id: str) -> str:
    return f"instore/{store_id}/screens/{screen_id}/cmd"


def screen_events(store_id: str, screen_id: str = "+") -> str:
    return f"instore/{store_id}/screens/{screen_id}/events"


def screen_state(store_id: str, screen_id: str = "+") -> str:
    return f"instore/{store_id}/screens/{screen_id}/state"


def zone_occupancy(store_id: str, zone_id: str = "+") -> str:
    return f"instore/{store_id}/zones/{zone_id}/occupancy"


def alerts(store_id: str, alert_id: str = "+") -> str:
    """One open staff alert, retained until the agent clears it (empty payload): a kiosk that
    starts or restarts sees every open alert at once. The default is the kiosks' filter."""
    return f"instore/{store_id}/alerts/{alert_id}"


def screen_errors(store_id: str, screen_id: str = "+") -> str:
    return f"instore/{store_id}/screens/{screen_id}/errors"


def screen_screenshot(store_id: str, screen_id: str = "+") -> str:
    return f"instore/{store_id}/screens/{screen_id}/screenshot"


def emergency(store_id: str) -> str:
    """Retained ScreenCommand (override / clear_override) that every screen of the store obeys."""
    return f"instore/{store_id}/emergency"


def alert_acks(store_id: str) -> str:
    return f"instore/{store_id}/alert-acks"


def scanner_adverts(store_id: str, scanner_id: str = "+") -> str:
    """ESP32 scanner node -> agent: one advert per message, the serial line's JSON."""
    return f"instore/{store_id}/ble/{scanner_id}/adverts"


def mmwave(store_id: str, zone_id: str = "+", sensor_id: str = "+") -> str:
    """mmWave presence sensor -> agent: "ON" / "OFF" (someone is there or not)."""
    return f"instore/{store_id}/zones/{zone_id}/mmwave/{sensor_id}"


def api_events(store_id: str) -> str:
    """Store API -> agent: CloudEvents of aggregate route counts (never a phone's request)."""
    return f"instore/{store_id}/api/events"


def node_base(store_id: str, node_id: str) -> str:
    """An ESP32 node's ESPHome ``topic_prefix``: its own status lives under it."""
    return f"instore/{store_id}/nodes/{node_id}"


def node_status(store_id: str, node_id: str = "+") -> str:
    """ESP32 node, retained: "online" (birth) / "offline" (last will, clean shutdown)."""
    return f"{node_base(store_id, node_id)}/status"


def kiosk_events(store_id: str, kiosk_id: str = "+") -> str:
    """Kiosk -> agent: CloudEvents (survey answers), like a screen's impressions."""
    return f"instore/{store_id}/kiosks/{kiosk_id}/events"


def kiosk_find(store_id: str, kiosk_id: str = "+") -> str:
    """Kiosk -> agent: a product finder request (contracts/kiosk_finder.py FindRequest)."""
    return f"instore/{store_id}/kiosks/{kiosk_id}/find"


def kiosk_found(store_id: str, kiosk_id: str) -> str:
    """Agent -> the asking kiosk only: results, stock and the way (FoundReply)."""
    return f"instore/{store_id}/kiosks/{kiosk_id}/found"


def kiosk_state(store_id: str, kiosk_id: str = "+") -> str:
    """Kiosk -> anyone (not retained): a finder reply is on screen, ``{"request_id", "shown":
    "results"|"route", "reply_ms", "frame_ms"}`` from the kiosk's own publish of the request to
    the reply's arrival and to the first drawn frame showing it. No query, no product."""
    return f"instore/{store_id}/kiosks/{kiosk_id}/state"


def pos_receipts(store_id: str) -> str:
    """Till bridges publish receipts here (line protocol in edge_agent/sensing/pos.py)."""
    return f"instore/{store_id}/pos"


def touches(store_id: str, device_id: str = "+") -> str:
    """Agent -> the store's other agents: the offers its screens just showed (attribution)."""
    return f"instore/{store_id}/touches/{device_id}"


def touches_window(store_id: str, device_id: str = "+") -> str:
    """Agent, retained: every touch of its attribution window, for a box that (re)starts."""
    return f"instore/{store_id}/touches/{device_id}/window"


def walk_cmd(store_id: str) -> str:
    """Kiosk -> agent: a walk survey (contracts/walk.py WalkCommand), QoS 1."""
    return f"instore/{store_id}/walk/cmd"


def walk_state(store_id: str) -> str:
    """Agent, retained: the walk being recorded, or the last one (contracts/walk.py WalkState)."""
    return f"instore/{store_id}/walk/state"
