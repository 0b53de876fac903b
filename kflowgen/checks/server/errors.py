"""The one error of the local control plane (its own module, so that certificates, processes and the client share
it without depending on each other)."""
from __future__ import annotations


class ControlPlaneError(RuntimeError):
    """The control plane could not start; the message holds the failing component's last log lines."""
