"""The one error hierarchy of initaudit.

Every failure the user can act on is an :class:`InitAuditError`; the CLI catches it once,
prints its one-line message and exits with its ``exit_code``.
"""

from __future__ import annotations


class InitAuditError(Exception):
    """Base of every error initaudit reports to a user; ``exit_code`` is what the CLI exits with."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(InitAuditError):
    """The command line asks for something that cannot be done as asked."""


class TargetError(InitAuditError):
    """A model target cannot be found, imported or built."""


class SnapshotError(InitAuditError):
    """A snapshot cannot be read, is not a snapshot, or fails its integrity checks."""


class OutputError(InitAuditError):
    """An output file cannot be written."""


class EnvironmentSetupError(InitAuditError):
    """An isolated torch environment cannot be created or used."""


class AuditFailure(InitAuditError):
    """The audit ran and found a problem (drift, failed verification): exit code 1."""

    exit_code = 1



#: What to do instead, said by every refusal that does not say it already.
STREAM_INSTEAD = (
    "run the same command without --stream: `freeze --digest-only` builds the model in "
    "memory and keeps only the digests"
)


class StreamError(UsageError):
    """The build cannot be replayed from a meta-device trace (exit code 2)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        if hint is None and "without --stream" not in message:
            hint = STREAM_INSTEAD
        super().__init__(message, hint=hint)


class BuildInterrupted(BaseException):
    """Not an error: initaudit stopped a build on purpose (its caller goes another way).

    A BaseException, like KeyboardInterrupt, so that neither a build's own ``except Exception``
    nor the error wrapping of a target's build turns it into a failed build.
    """
