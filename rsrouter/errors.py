"""Typed errors: every one names the problem and the fix."""

from __future__ import annotations


class RsrouterError(Exception):
    """Base class of rsrouter's errors."""


class DatasetNotFoundError(RsrouterError, FileNotFoundError):
    """A dataset is not in any of the places rsrouter looked."""


class UnknownArchitectureError(RsrouterError, ValueError):
    """An architecture name that is neither rsrouter's, a plugin's nor timm's."""


class CardError(RsrouterError, ValueError):
    """An expert or router card (config.json) that fails the schema check."""


class SigmaNotServedError(CardError):
    """A sigma the expert's weights do not serve (or none named for weights serving several);
    ``served`` lists the sigmas they do serve."""

    def __init__(self, message: str, served: tuple[float, ...] = ()) -> None:
        super().__init__(message)
        self.served = tuple(served)


class IntegrityError(RsrouterError):
    """A weights file whose sha256 or contents do not match what was pinned."""


class UnknownExpertError(RsrouterError, KeyError):
    """A name that no registry file lists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RegistryError(RsrouterError, ValueError):
    """A registry file that is malformed or conflicts with another."""


class HubError(RsrouterError):
    """A Hub operation that failed (offline and not cached, unreachable endpoint, ...)."""


class ConfigError(RsrouterError, ValueError):
    """A plugin config (YAML) that fails validation; the message names the key."""


class ResumeError(RsrouterError, ValueError):
    """An output that exists with other settings than the run that would continue it."""


class UntrustedCodeError(RsrouterError):
    """A card names Python code (``module:factory``) that the user has not opted in to run."""


class CountsError(RsrouterError, ValueError):
    """Stored counts that no certification could have produced (nA > n, n0 = 0, alpha = 2, ...)."""


class ResultsError(RsrouterError, ValueError):
    """A results file that is not a certification TSV, or whose rows are inconsistent."""


class ProtocolMismatch(ResultsError):
    """A published log holds radii that the protocol it is declared with cannot produce."""


class LockedError(RsrouterError):
    """An output that another running process is writing."""
