"""The smoke record (build/smoke/<image id>.json): this image id was smoked, with this result. `invoke
publish` reads it as its gate."""

from __future__ import annotations

from pydantic import Field

from kiln.data.records.base import Record
from kiln.data.schema import Model


class SmokeSummary(Model):
    passed: int = Field(alias="pass")
    warn: int
    fail: int
    skip: int


class SmokeRecord(Record):
    image_id: str
    tag: str
    exit_code: int
    gpus: str
    summary: SmokeSummary
    profile: str | None = None

    def passed(self) -> bool:
        return self.exit_code == 0 and self.summary.fail == 0
