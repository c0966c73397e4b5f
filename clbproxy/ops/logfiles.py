"""Reopening log files after logrotate moved them: what SIGUSR1 does."""

from __future__ import annotations

from typing import Callable

from twisted.logger import Logger, globalLogPublisher

log = Logger()


class LogReopener:
    """Reopens log files after logrotate moved them (SIGUSR1).

    twistd's ``--logfile`` is found among the global log observers; ``hooks`` are
    called too (the access log registers its own reopen function there).
    """

    def __init__(self, publisher=globalLogPublisher) -> None:
        self._publisher = publisher
        self.hooks: list[Callable[[], object]] = []

    def log_files(self) -> list:
        """twistd's log files: the ``LogFile`` objects behind file observers."""
        files = []
        for observer in getattr(self._publisher, "_observers", ()):
            target = getattr(observer, "_outFile", None)
            if target is not None and callable(getattr(target, "reopen", None)):
                files.append(target)
        return files

    def reopen(self) -> None:
        for log_file in self.log_files():
            try:
                log_file.reopen()
            except OSError as error:
                log.error("cannot reopen log file {path}: {error}", path=log_file.path, error=error)
        for hook in list(self.hooks):
            try:
                hook()
            except Exception:
                log.failure("log reopen hook failed")
        log.info("log files reopened")
