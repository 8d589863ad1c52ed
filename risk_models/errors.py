"""Typed errors.  Every error that reaches the user says where, what and how to fix it."""

from __future__ import annotations


class PmoptError(Exception):
    """Base of every error pmopt raises on purpose.  ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(PmoptError):
    """Bad input: a file, a key inside it, and the reason.  Exit code 2.

    ``file`` is the path as the user gave it, ``key`` a dotted key path inside the file
    (``venues.binance.accounts.main.positions[0].qty``), ``reason`` what is wrong and ``remedy`` how to fix it.
    """

    exit_code = 2

    def __init__(self, file: str, key: str, reason: str, remedy: str = "") -> None:
        self.file = file
        self.key = key
        self.reason = reason
        self.remedy = remedy
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        text = f"{where}: {self.reason}"
        return f"{text} ({self.remedy})" if self.remedy else text


class InputErrors(PmoptError):
    """Several input problems found at once (a whole file validated).  Exit code 2."""

    exit_code = 2

    def __init__(self, errors: list[InputError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class UnknownRuleSetError(InputError):
    """A book names a rule set that is neither built in nor a readable file."""


class RiskModelError(PmoptError, ValueError):
    """A risk-model parameter or input array is unusable.  Exit code 2.  The message says how to fix it."""

    exit_code = 2

    def __init__(self, reason: str, remedy: str = "") -> None:
        self.reason = reason
        self.remedy = remedy
        super().__init__(f"{reason} ({remedy})" if remedy else reason)


class ScratchSpaceError(PmoptError):
    """The disk under ``TMPDIR`` cannot hold a scenario matrix (exit code 1); the message says how much is needed."""

