"""Errors a person can act on.

Every error fedpeer raises on purpose derives from ``FedpeerError``. The command-line
tools print these as ``Name: message`` without a traceback; anything else is a bug and
keeps its traceback. No message ever contains row-level patient data: an extract error
names the table, the line or row and the column, never the value found there.

    FedpeerError
    ├── ExtractError            the practice extract is malformed (table, line, column)
    ├── DefinitionError         an indicator definition or codelist is invalid (file, field)
    ├── PolicyError             a disclosure policy is invalid, or a round asks for a looser one
    ├── ReleaseRefused          the agent will not release this (ledger, differencing, budget)
    ├── DisclosureViolation     a submission breaks the round's disclosure policy
    ├── EnrolmentError          a token is unknown, used or expired; a CSR is unacceptable
    ├── IdentityError           a certificate is missing, from another CA, or revoked
    ├── RoundError              a round is unknown, closed, or in the wrong state
    ├── StoreError              the coordinator's store cannot do what was asked
    ├── HomeNotFound            the home directory given (--home) does not exist
    ├── UnsafeFile              a private file's place holds a link (or is not a file/folder)
    ├── CoordinatorUnreachable  the agent cannot reach the coordinator
    └── VersionError            the agent is older than the coordinator accepts: upgrade it
"""

from __future__ import annotations


class FedpeerError(Exception):
    """Base of every error a user can act on."""


class ExtractError(FedpeerError):
    """The practice extract is malformed; the message names table, line or row, column."""

    def __init__(
        self,
        problem: str,
        *,
        table: str | None = None,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.problem = problem
        self.table = table
        self.line = line
        self.column = column
        where = ", ".join(
            part
            for part in (
                f"table {table}" if table else "",
                f"line {line}" if line is not None else "",
                f"column {column}" if column else "",
            )
            if part
        )
        super().__init__(f"{where}: {problem}" if where else problem)


class DefinitionError(FedpeerError):
    """An indicator definition or codelist is invalid."""


class PolicyError(FedpeerError):
    """A disclosure policy is invalid, or a round asks for a looser one than allowed."""


class ReleaseRefused(FedpeerError):
    """The agent refuses to release a result (ledger, differencing or privacy budget)."""


class DisclosureViolation(FedpeerError):
    """A submission breaks the round's disclosure policy."""


class EnrolmentError(FedpeerError):
    """Enrolment failed: unknown, used or expired token, or an unacceptable CSR."""


class IdentityError(FedpeerError):
    """A certificate is missing, issued by another CA, expired or revoked."""


class RoundError(FedpeerError):
    """A round is unknown, closed, or not in the state the operation needs."""


class StoreError(FedpeerError):
    """The coordinator's store cannot do what was asked."""


class HomeNotFound(FedpeerError):
    """The agent's or coordinator's home directory given on the command line does not exist."""


class CoordinatorUnreachable(FedpeerError):
    """The agent cannot reach the coordinator."""


class VersionError(FedpeerError):
    """The agent's fedpeer is older than the coordinator accepts; upgrading it is the fix."""


class UnsafeFile(FedpeerError):
    """A private file (key, values, audit) would be written through a link, or over another."""
