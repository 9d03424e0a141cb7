"""Commands from central ops (downlink kind ``command``), checked before anything runs.

A command body is one JSON object, e.g. ``{"command": "screenshot", "screen": "screen-entrance"}``:

- ``screenshot``: ask a screen's player (or ``"*"``, every screen) for a downscaled picture of
  what it shows; the agent relays the player's answer to ``.../devices/<d>/screenshots/<screen>``.
- ``resync``: re-announce the box (its retained birth), re-send at once the batches the CDP has
  not confirmed, and ask central for fresh snapshots by publishing the applied versions on the
  acks topic. (Screen commands are retained on the bus: players get them back by themselves.)
- ``emergency`` / ``clear_emergency``: an override on every screen of the store (title, body,
  background), retained on the store's emergency topic until cleared, so a screen that starts
  mid-emergency shows it too.
- ``rotate_credentials`` / ``install_certificate``: a new TLS client key made on the box, its
  certificate request published for ops, the signed certificate checked and swapped in on
  probation (``edge_agent/downlink/credentials.py``).
- ``restart``: a clean stop with exit status 75 so systemd (``Restart=on-failure``) starts the
  agent again.

Signing, version and expiry checks happen before (``sync.downlink``); this module only says
whether the command itself makes sense on this box, with a one-line reason when it does not.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from contracts.screen_protocol import Content, ScreenCommand
from contracts.validation import first_error

RESTART_EXIT_STATUS = 75  # EX_TEMPFAIL: "try again", which systemd's on-failure restarts


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Literal[
        "screenshot",
        "resync",
        "restart",
        "emergency",
        "clear_emergency",
        "rotate_credentials",
        "install_certificate",
    ]
    screen: str | None = None  # screenshot: a screen id, or "*" for every screen
    # emergency: what every screen shows
    title: str | None = Field(None, min_length=1, max_length=120)
    body: str = Field("", max_length=500)
    background: str = Field("#b00020", pattern=r"^#[0-9a-fA-F]{6}$")
    certificate_pem: str | None = Field(None, max_length=16_384)  # install_certificate
    reason: str = Field("", max_length=200)  # for the log: who asked and why


def parse_command(body: dict[str, Any], screens: Iterable[str]) -> Command:
    """The command, or ValueError with one line naming what is wrong."""
    try:
        cmd = Command.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"command {first_error(exc, 'body')}") from None
    known = set(screens)
    if cmd.command == "screenshot":
        if not cmd.screen:
            raise ValueError("command screen: a screenshot needs a screen id or '*'")
        if cmd.screen != "*" and cmd.screen not in known:
            raise ValueError(f"command screen: {cmd.screen!r} is not a screen of this box")
    elif cmd.screen is not None:
        raise ValueError(f"command screen: not used by {cmd.command!r}")
    if cmd.command == "emergency" and not cmd.title:
        raise ValueError("command title: an emergency needs a title")
    if cmd.command != "emergency" and (cmd.title or cmd.body):
        raise ValueError(f"command title: not used by {cmd.command!r}")
    if (cmd.command == "install_certificate") != (cmd.certificate_pem is not None):
        raise ValueError("command certificate_pem: given exactly with install_certificate")
    return cmd


def emergency_command(cmd: Command) -> ScreenCommand:
    """The retained screen command for an emergency (or its end)."""
    if cmd.command == "clear_emergency":
        return ScreenCommand(kind="clear_override")
    content = Content(
        content_id="emergency",
        variant="override",
        # Drawn as an emergency: centred, between rules, "Achtung" over it (not an offer).
        template="emergency",
        title=cmd.title or "",
        body=cmd.body,
        background=cmd.background,
    )
    # Long-lived: an emergency holds until cleared, whenever a screen (re)starts.
    return ScreenCommand(kind="override", content=content, ttl_s=7 * 24 * 3600)


def target_screens(cmd: Command, screens: Iterable[str]) -> list[str]:
    return sorted(screens) if cmd.screen == "*" else [cmd.screen] if cmd.screen else []
