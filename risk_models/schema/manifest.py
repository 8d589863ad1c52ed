"""The batch manifest (spec §7): named optimization jobs, each a book, a policy and optional planned trades."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from .common import Strict

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
"""Job names become report file names (``DIR/<name>.json``): letters, digits and ``. _ + -``, no path separator."""


class Job(Strict):
    """One job: the files of one `pmopt optimize` run, relative to the manifest."""

    name: str
    book: str = Field(min_length=1)
    policy: str = Field(min_length=1)
    trades: str | None = Field(default=None, min_length=1)

    @field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name):
            raise ValueError(f"job name {name!r} must start with a letter or digit and hold only letters, digits "
                             "and . _ + - (at most 128 characters): it names the job's report file")
        return name


class Manifest(Strict):
    version: Literal[1]
    jobs: list[Job] = Field(min_length=1)
