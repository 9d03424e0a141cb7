"""What a UI test's driver does inside the window's own process (the kiosk or the player run in
a subprocess whose ``__main__`` is the test file): report steps as JSON lines the test reads,
touch widgets as a finger would, and wait on a condition without blocking Kivy's loop."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any


class Driver:
    def __init__(self, results: str, give_up: Callable[[], None]) -> None:
        self.results = results
        self.give_up = give_up  # how the app ends when a wait times out

    def report(self, step: str, **data: object) -> None:
        with open(self.results, "a") as fh:
            fh.write(json.dumps({"step": step, **data}) + "\n")

    @staticmethod
    def touch(widget: Any, hold: float = 0.0) -> None:
        from kivy.tests.common import UnitTestTouch

        x, y = widget.to_window(*widget.center)
        t = UnitTestTouch(x, y)
        t.touch_down()
        if hold:
            time.sleep(hold)
        t.touch_up()

    def wait_until(
        self, pred: Callable[[], object], then: Callable[[], None], timeout: float = 30.0
    ) -> None:
        """``then()`` once ``pred()`` holds, checked every 50 ms from Kivy's clock; on a loaded
        CI machine things take a while, so the timeout is generous. Timed out: a failed "done"."""
        from kivy.clock import Clock

        deadline = time.monotonic() + timeout

        def check(_dt: float) -> None:
            if pred():
                then()
            elif time.monotonic() > deadline:
                self.report("done", ok=False, why=f"timed out before {then.__name__}")
                self.give_up()
            else:
                Clock.schedule_once(check, 0.05)

        Clock.schedule_once(check, 0.05)
