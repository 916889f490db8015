"""The base class of every canonical entity, and the field types they share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


Timestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An instant. On the wire an RFC 3339 string in UTC with a trailing `Z`
(`2026-11-27T08:15:02Z`, `2026-11-27T08:15:02.123Z`); in Python an aware `datetime`
normalised to UTC. A naive timestamp is rejected: the mapping decides its zone, not us."""

Identifier = Annotated[str, Field(min_length=1)]
"""An identifier assigned by the source system, always a non-empty string (an Odoo integer
id 42 is `"42"`), so the model does not depend on one ERP's id scheme."""


class CanonicalModel(BaseModel):
    """Base of the canonical manufacturing entities (DESIGN.md decision 3).

    A subclass is one version of one entity type. Its JSON Schema
    (`model_json_schema(mode="serialization")`) is what the Rust core enforces on every
    mapped entity before routing, so the pydantic class is the single source of truth.
    A breaking change means a new class with `version` + 1, never an edit in place.
    """

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type_name: ClassVar[str]
    """The entity type, e.g. `inventory_movement`; the key in `CANONICAL_MODELS`."""
    version: ClassVar[int] = 1
    """The schema version of this class."""

    @classmethod
    def ce_type(cls) -> str:
        """The CloudEvents `type` attribute, e.g. `com.millstream.stock_level.v1`."""
        return f"com.millstream.{cls.type_name}.v{cls.version}"

    @classmethod
    def dataschema(cls) -> str:
        """The CloudEvents `dataschema` attribute, e.g. `urn:millstream:schema:stock_level:v1`."""
        return f"urn:millstream:schema:{cls.type_name}:v{cls.version}"
