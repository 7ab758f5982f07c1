"""Long library calls that are not training runs (compressing a model, a data-efficiency curve) run as a `Job`: a
background thread that reports progress through a `Reporter`, observed by polling (a page's `st.fragment`), stopped
cooperatively. The CLI calls the same functions directly, with a Reporter that prints."""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from workbench.core.errors import StopRequested


class Reporter:
    """What a long call is told to use: `progress(message, fraction)` for where it is, `item(value)` for each
    partial result (a curve's point), and `stopping` to end early. `progress` raises StopRequested once a stop was
    asked for, so a call stops at its next progress report without checking by itself."""

    def __init__(self, on_progress: Callable[[str, float | None], None] | None = None,
                 on_item: Callable[[Any], None] | None = None):
        self._on_progress = on_progress
        self._on_item = on_item
        self._stop = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def progress(self, message: str, fraction: float | None = None) -> None:
        if self._stop.is_set():
            raise StopRequested
        if self._on_progress:
            self._on_progress(message, fraction)

    def item(self, value: Any) -> None:
        if self._on_item:
            self._on_item(value)


class Job:
    """`target(reporter)` in a daemon thread. Readable from any thread: status (running | finished | stopped |
    failed), message and fraction (the latest progress), items (partial results so far), result, error."""

    def __init__(self, kind: str, target: Callable[[Reporter], Any]):
        self.id = f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(2)}"
        self.kind = kind
        self.status = "running"
        self.message = "starting"
        self.fraction: float | None = 0.0
        self.items: list[Any] = []
        self.result: Any = None
        self.error: str | None = None
        self.reporter = Reporter(self._progress, self.items.append)
        self._target = target
        self._thread = threading.Thread(target=self._work, name=f"job-{self.id}", daemon=True)

    def start(self) -> Job:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to end at its next progress report (a training run inside it ends after its batch)."""
        self.reporter.stop()

    def wait(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def done(self) -> bool:
        return self.status != "running"

    def _progress(self, message: str, fraction: float | None) -> None:
        self.message, self.fraction = message, fraction

    def _work(self) -> None:
        try:
            self.result = self._target(self.reporter)
            self.status, self.fraction = "finished", 1.0
        except StopRequested:
            self.status, self.message = "stopped", "stopped"
        except Exception as error:  # noqa: BLE001 - the page shows what went wrong; the server keeps going
            traceback.print_exc()
            self.status, self.error = "failed", f"{type(error).__name__}: {error}"
