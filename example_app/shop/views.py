"""HTTP routes of the shop app."""

from typing import Any

from flask import request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from example_app import db
from example_app.accounts.models import User
from example_app.shop import bp
from example_app.shop.models import Order, OrderLine, Product


def product_json(product: Product) -> dict[str, Any]:
    """Serialise a product for JSON responses."""
    return {"id": product.id, "sku": product.sku, "name": product.name, "price_cents": product.price_cents}


@bp.get("/products")
def list_products() -> ResponseReturnValue:
    """List all products."""
    products = db.session.scalars(select(Product).order_by(Product.id))
    return [product_json(product) for product in products]


@bp.post("/orders")
def create_order() -> ResponseReturnValue:
    """Create an order from ``{"user_id", "lines": [{"product_id", "quantity"}]}``; quantity defaults to 1."""
    data = request.get_json()
    if not isinstance(data, dict):
        return {"error": "expected a JSON object"}, 400
    user_id, raw_lines = data.get("user_id"), data.get("lines")
    if not isinstance(user_id, int) or db.session.get(User, user_id) is None:
        return {"error": "unknown user_id"}, 400
    if not isinstance(raw_lines, list) or not raw_lines:
        return {"error": "lines must be a non-empty list"}, 400
    lines = []
    for raw in raw_lines:
        if not isinstance(raw, dict):
            return {"error": "each line must be a JSON object"}, 400
        product_id, quantity = raw.get("product_id"), raw.get("quantity", 1)
        product = db.session.get(Product, product_id) if isinstance(product_id, int) else None
        if product is None:
            return {"error": "unknown product_id"}, 400
        if not isinstance(quantity, int) or quantity < 1:
            return {"error": "quantity must be a positive integer"}, 400
        lines.append(OrderLine(product=product, quantity=quantity))
    order = Order(user_id=user_id, lines=lines)
    db.session.add(order)
    db.session.commit()
    return {
        "id": order.id,
        "user_id": order.user_id,
        "created_at": order.created_at.isoformat(),
        "lines": [{"product_id": line.product_id, "quantity": line.quantity} for line in order.lines],
        "total_cents": sum(line.quantity * line.product.price_cents for line in order.lines),
    }, 201
