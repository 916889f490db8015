"""Sales: customer orders."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .base import CanonicalModel, Identifier, Timestamp


class SalesOrder(CanonicalModel):
    """A customer quotation or order (Odoo `sale.order`)."""

    type_name: ClassVar[str] = "sales_order"

    order_id: Identifier
    """The source system's id of the order."""
    name: Identifier
    """The order's human reference, e.g. `S00042`."""
    customer_id: Identifier
    """The customer (Odoo `partner_id`)."""
    status: Literal["quotation", "quotation_sent", "confirmed", "cancelled"]
    """`quotation`: draft offer. `quotation_sent`: offer sent to the customer. `confirmed`:
    accepted order (locked or not). `cancelled`: cancelled."""
    amount_total: float
    """Total amount including taxes, in `currency`. Negative only for credit-like orders."""
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    """ISO 4217 code of the order's currency, e.g. `EUR`."""
    ordered_at: Timestamp
    """The order date (quotation date until confirmed, confirmation date after)."""
    commitment_date: Timestamp | None = None
    """The delivery date promised to the customer, if one was promised."""
    customer_ref: str | None = None
    """The customer's own reference for the order (their PO number)."""
    updated_at: Timestamp
    """When the source record was last written: the version for stale-update checks."""
