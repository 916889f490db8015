"""Production: manufacturing orders."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import CanonicalModel, Identifier, Timestamp


class ProductionOrder(CanonicalModel):
    """An order to manufacture a quantity of one product (Odoo `mrp.production`)."""

    type_name: ClassVar[str] = "production_order"

    order_id: Identifier
    """The source system's id of the order."""
    name: Identifier
    """The order's human reference, e.g. `WH/MO/00017`."""
    product_id: Identifier
    """The product being made."""
    bom_id: str | None = None
    """The bill of materials the order follows, if any."""
    quantity_planned: float = Field(ge=0)
    """The quantity to produce, in `uom`."""
    quantity_producing: float = Field(ge=0)
    """The quantity currently being produced or produced so far, in `uom`."""
    uom: str | None = None
    """The canonical unit of the quantities, e.g. `Units`, `kg`."""
    status: Literal["draft", "confirmed", "in_progress", "to_close", "done", "cancelled"]
    """`draft`: not yet confirmed. `confirmed`: planned, not started. `in_progress`: work has
    started. `to_close`: everything produced, waiting to be closed. `done`: closed, stock
    posted. `cancelled`: will not be produced."""
    planned_start: Timestamp | None = None
    """When production is planned to start (Odoo `date_start`)."""
    finished_at: Timestamp | None = None
    """When production finished once `status` is `done`; while the order is open, the
    planned finish if the source plans one (Odoo `date_finished` is both)."""
    origin: str | None = None
    """The document that caused the order, e.g. a sales order name."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""
