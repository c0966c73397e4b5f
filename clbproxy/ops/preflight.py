"""What a tap.conf must pass before it serves, at start and on every reload.

:func:`clbproxy.config.load_config` reads the file and knows nothing of TLS (the
config layer sits below the TLS code); :func:`load_checked` adds the checks
that read other files: every HTTPS listener's certificates and keys and every
backend CA bundle.  Every caller that is about to serve (``twistd clbproxy``,
``clbproxy check``, a reload, a worker) uses it, so a broken certificate is a
problem line like any other, with the same text everywhere.
"""

from __future__ import annotations

import os

import attrs
from twisted.logger import Logger

from clbproxy.config import Config, ConfigError, load_config
from clbproxy.net.certificates import ensure_self_signed
from clbproxy.net.tls import inspect_certificates

log = Logger()


def load_checked(path: str) -> Config:
    """Read and validate the tap.conf at ``path``, certificates included.

    Raises :class:`~clbproxy.config.ConfigError` with every problem of the file,
    or else every certificate problem, one line each.  Certificate warnings (an
    expired certificate, ``verify = false``) come first among
    ``Config.warnings``.  A descriptor budget too small for ``max_connections``
    is a warning of :func:`~clbproxy.config.load_config` itself.
    """
    return checked(load_config(path))


def checked(config: Config) -> Config:
    """``config`` once its certificate files passed (see :func:`load_checked`)."""
    problems, warnings = inspect_certificates(config)
    if problems:
        raise ConfigError(problems)
    if warnings:
        config = attrs.evolve(config, warnings=(*warnings, *config.warnings))
    return config


def prepare_certificates(config: Config) -> None:
    """Generate the self-signed certificates ``config`` asks for, once, before serving.

    The supervisor calls it before its workers start, so they do not race to
    write the same files.  A directory that cannot be written raises
    ``SystemExit`` with one line naming the listener.
    """
    for listener in config.listeners:
        if listener.tls is not None and listener.tls.self_signed:
            directory = os.path.abspath(listener.tls.state_directory)
            try:
                generated = ensure_self_signed(directory)
            except OSError as error:
                raise SystemExit(f"clbproxy: listener:{listener.name}: {error}") from None
            if generated:
                log.info(
                    "tls: listener {listener}: generated a self-signed certificate in {directory}",
                    listener=listener.name,
                    directory=directory,
                )
