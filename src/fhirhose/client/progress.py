"""What a pull reports while it runs: `Progress` (silent) and `TqdmProgress` (bars on stderr).

The client calls these hooks from its event loop; a hook that raises aborts the pull
(the state file keeps what was done, so `--resume` continues).
"""

from __future__ import annotations

import re
import sys
from typing import Any

from .state import FileState

__all__ = ["Progress", "TqdmProgress"]

_PCT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


class Progress:
    """No-op base: subclass and override the hooks you need."""

    def kickoff(self, url: str) -> None:
        """The kick-off request is about to go out."""

    def accepted(self, status_url: str) -> None:
        """The server accepted the export (or a resumed one was found)."""

    def polled(self, status: int, progress: str | None) -> None:
        """A status request returned `status`; `progress` is its X-Progress text."""

    def listed(self, f: FileState) -> None:
        """A manifest listed a new file."""

    def started(self, f: FileState, offset: int, total: int | None) -> None:
        """A download (re)started at byte `offset` of `total` wire bytes."""

    def received(self, f: FileState, n: int) -> None:
        """`n` more bytes of `f` arrived."""

    def verified(self, f: FileState) -> None:
        """`f` is complete, verified and in place."""

    def close(self) -> None:
        """The pull ended (successfully or not)."""


class TqdmProgress(Progress):
    """Bars for kick-off, status polling, overall resources, and one per active download."""

    def __init__(self, file=None, disable: bool | None = None):
        from tqdm import tqdm

        self._tqdm = tqdm
        self.file = file or sys.stderr
        self.disable = (not self.file.isatty()) if disable is None else disable
        # tqdm bars: tqdm ships no type information, so they are Any
        self._bars: dict[str, Any] = {}
        self._kick: Any = None
        self._status: Any = None
        self._total: Any = None

    def _bar(self, **kw):
        return self._tqdm(file=self.file, disable=self.disable, dynamic_ncols=True, **kw)

    def kickoff(self, url: str) -> None:
        # tqdm puts ", " before a postfix, so it goes last: "kick-off 00:01, <url>".
        self._kick = self._bar(total=1, desc="kick-off", bar_format="{desc} {elapsed}{postfix}", postfix=url)

    def accepted(self, status_url: str) -> None:
        if self._kick is None:
            self.kickoff(status_url)
        self._kick.set_postfix_str(f"accepted: {status_url}")
        self._kick.update(1)
        self._kick.close()
        self._status = self._bar(total=100, desc="export", unit="%", bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}{postfix}")
        self._total = self._bar(total=0, desc="resources", unit=" res", unit_scale=True)

    def polled(self, status: int, progress: str | None) -> None:
        if self._status is None:
            return
        m = _PCT.search(progress or "")
        if status == 200:
            self._status.n = 100
        elif m:
            self._status.n = min(100.0, float(m[1]))
        self._status.set_postfix_str(progress or ("done" if status == 200 else f"HTTP {status}"), refresh=True)

    def listed(self, f: FileState) -> None:
        if self._total is not None and f.count:
            self._total.total += f.count
            self._total.refresh()

    def started(self, f: FileState, offset: int, total: int | None) -> None:
        bar = self._bars.get(f.url)
        if bar is None:
            bar = self._bars[f.url] = self._bar(desc=f.name, unit="B", unit_scale=True, unit_divisor=1024, leave=False)
        bar.reset(total=total)
        bar.update(offset)
        if f.count:
            bar.set_postfix_str(f"{f.count:,} resources")

    def received(self, f: FileState, n: int) -> None:
        bar = self._bars.get(f.url)
        if bar is not None:
            bar.update(n)
            if self._total is not None and f.count and bar.total:
                self._total.update(f.count * n / bar.total)

    def verified(self, f: FileState) -> None:
        bar = self._bars.pop(f.url, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for bar in [*self._bars.values(), self._total, self._status]:
            if bar is not None:
                if bar is self._total and bar.total:
                    bar.n = bar.total
                bar.close()
        self._bars.clear()
