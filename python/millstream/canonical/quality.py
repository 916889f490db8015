"""Quality: holds raised against products or lots."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import CanonicalModel, Identifier, Timestamp


class QualityHold(CanonicalModel):
    """A quality problem that may block a product or lot until it is resolved (Odoo
    `quality.alert`)."""

    type_name: ClassVar[str] = "quality_hold"

    hold_id: Identifier
    """The source system's id of the hold."""
    name: Identifier
    """The hold's human reference, e.g. `QA00012`."""
    title: str | None = None
    """A short description of the problem."""
    product_id: str | None = None
    """The product concerned, if any."""
    lot_id: str | None = None
    """The lot or serial number concerned, if any."""
    stage: Identifier
    """The workflow stage as the source names it (for Odoo, the `quality.alert.stage`
    id). Stages are configurable, so consumers should act on `status`, not on this."""
    status: Literal["open", "closed"]
    """`open` while the problem is unresolved, `closed` once solved or dismissed."""
    priority: int = Field(ge=0, le=3)
    """Urgency from 0 (normal) to 3 (most urgent), as Odoo's star rating."""
    team_id: str | None = None
    """The quality team in charge."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""
