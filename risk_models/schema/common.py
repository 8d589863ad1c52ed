"""Shared pydantic base: unknown keys are errors, NaN/inf are rejected, models are frozen; an attribute's
docstring is its description in the JSON Schema (docs/generate_schemas.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, use_attribute_docstrings=True)
