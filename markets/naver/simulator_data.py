"""Realistic-looking, deterministic sample data for the Naver simulator."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from markets.simulators.sample import GOODS, KST, NAMES, STREETS, masked

__all__ = ["naver_product_orders", "naver_products"]


def naver_product_orders(count: int, start: datetime, days: int, seed: int) -> list[dict[str, Any]]:
    """`count` product orders; several share one change moment (paging must use the sequence)."""
    rng = random.Random(f"{seed}:naver")
    step = timedelta(days=days) / max(count // 3, 1)
    orders = []
    for index in range(count):
        changed = (start + step * (index // 3)).astimezone(KST)
        order_id = f"2025{index // 2:012d}"
        name = rng.choice(NAMES)
        price = rng.randrange(5_000, 90_000, 100)
        quantity = rng.randint(1, 3)
        orders.append(
            {
                "productOrderId": f"2025{index:012d}1",
                "orderId": order_id,
                "changed": changed,
                "productOrderStatus": "PAYED",
                # one in ten has a cancel request as its last change
                "changedType": "CLAIM_REQUESTED" if index % 10 == 9 else "PAYED",
                "order": {
                    "orderId": order_id,
                    "orderDate": changed.isoformat(timespec="milliseconds"),
                    "ordererName": masked(name),
                    "paymentDate": changed.isoformat(timespec="milliseconds"),
                    "paymentMeans": "신용카드",
                },
                "productOrder": {
                    "productOrderId": f"2025{index:012d}1",
                    "productName": rng.choice(GOODS),
                    "quantity": quantity,
                    "unitPrice": price,
                    "totalPaymentAmount": price * quantity,
                    "originProductNo": 5_000_000 + index % 20,
                    "shippingAddress": {
                        "name": masked(rng.choice(NAMES)),
                        "baseAddress": rng.choice(STREETS),
                        "zipCode": f"{rng.randint(10000, 63999)}",
                    },
                },
            }
        )
    return orders


def naver_products(count: int, seed: int) -> dict[int, dict[str, Any]]:
    rng = random.Random(f"{seed}:naver:products")
    return {
        5_000_000 + index: {
            "originProduct": {
                "statusType": "SALE",
                "name": rng.choice(GOODS),
                "salePrice": rng.randrange(5_000, 90_000, 100),
                "stockQuantity": rng.randint(0, 500),
                "detailContent": "<p>상세 설명</p>",
                "leafCategoryId": "50000803",
            },
            "smartstoreChannelProduct": {
                "channelProductNo": 8_000_000 + index,
                "channelProductDisplayStatusType": "ON",
                "naverShoppingRegistration": True,
            },
        }
        for index in range(count)
    }
