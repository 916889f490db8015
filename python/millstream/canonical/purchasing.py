"""Purchasing: goods received from suppliers."""

from __future__ import annotations

from typing import ClassVar, Literal

from .base import CanonicalModel, Identifier, Timestamp


class GoodsReceipt(CanonicalModel):
    """An incoming transfer of goods from a supplier (Odoo `stock.picking` of an incoming
    operation type)."""

    type_name: ClassVar[str] = "goods_receipt"

    receipt_id: Identifier
    """The source system's id of the receipt."""
    name: Identifier
    """The receipt's human reference, e.g. `WH/IN/00042`."""
    supplier_id: str | None = None
    """The supplier delivering the goods."""
    origin: str | None = None
    """The document the receipt comes from, usually a purchase order name (`P00017`)."""
    status: Literal["draft", "waiting", "confirmed", "ready", "received", "cancelled"]
    """`draft`: not yet confirmed. `waiting`: waits for another operation. `confirmed`:
    expected, not yet ready to process. `ready`: ready to be received. `received`: goods
    received and booked into stock. `cancelled`: will not be received."""
    scheduled_at: Timestamp | None = None
    """When the goods are expected."""
    received_at: Timestamp | None = None
    """When the goods were received (set once `status` is `received`)."""
    destination_location: str | None = None
    """The location the goods are received into."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""
