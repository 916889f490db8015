"""Inventory: movements of goods and the stock levels they produce."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import CanonicalModel, Identifier, Timestamp


class InventoryMovement(CanonicalModel):
    """A planned or executed movement of one product between two locations (Odoo
    `stock.move`). Quantities are in the canonical unit `uom`."""

    type_name: ClassVar[str] = "inventory_movement"

    movement_id: Identifier
    """The source system's id of the movement."""
    reference: str | None = None
    """Human reference of the movement or its transfer, e.g. `WH/IN/00042`."""
    product_id: Identifier
    """The product moved."""
    quantity: float = Field(ge=0)
    """The quantity the movement is for (its demand), in `uom`."""
    quantity_done: float | None = Field(None, ge=0)
    """The quantity reserved or picked so far, and the quantity actually moved once `status`
    is `done` (Odoo 17+ `quantity`, `quantity_done` before 17), in `uom`."""
    uom: Identifier
    """The canonical unit of `quantity` and `quantity_done`, e.g. `Units`, `kg`."""
    from_location: str | None = None
    """The location the goods leave."""
    to_location: str | None = None
    """The location the goods arrive at."""
    status: Literal["planned", "waiting", "confirmed", "reserved", "done", "cancelled"]
    """`planned`: drafted, not yet requested. `waiting`: waits for another movement.
    `confirmed`: requested, stock not yet reserved. `reserved`: stock reserved for it, fully
    or partly. `done`: the goods moved. `cancelled`: will not happen."""
    origin: str | None = None
    """The document that caused the movement, e.g. a sales or purchase order name."""
    picking_id: str | None = None
    """The transfer (picking) the movement belongs to, if any."""
    production_id: str | None = None
    """The production order the movement produces for, if any."""
    moved_at: Timestamp | None = None
    """When the goods moved once `status` is `done`; before that, when they are scheduled
    to move (Odoo uses one field, `date`, for both)."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""


class StockLevel(CanonicalModel):
    """The on-hand quantity of one product (and lot) at one location (Odoo `stock.quant`)."""

    type_name: ClassVar[str] = "stock_level"

    level_id: str | None = None
    """The source system's id of this stock record (Odoo `stock.quant` id), when it has one.
    Odoo keeps one quant per product, location, lot, package and owner, so this is a
    finer and more stable key than product + location + lot."""
    product_id: Identifier
    """The product held."""
    location_id: Identifier
    """The location it is held at."""
    lot_id: str | None = None
    """The lot or serial number, for tracked products."""
    quantity: float
    """On-hand quantity in `uom`. May be negative: Odoo lets stock go below zero when more
    is moved out than it knew was there."""
    reserved_quantity: float
    """The part of `quantity` reserved for planned movements, in `uom`. Not constrained:
    the ERP's figure is passed on as it is, even when inconsistent."""
    uom: str | None = None
    """The canonical unit of both quantities, when the source says it."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""
