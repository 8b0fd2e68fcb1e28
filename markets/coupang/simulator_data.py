"""Realistic-looking, deterministic sample data for the Coupang simulator."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from markets.simulators.sample import GOODS, NAMES, STREETS, local, masked

__all__ = [
    "BUNDLE_EVERY",
    "BUNDLE_FROM",
    "BUNDLE_ITEMS",
    "COUPANG_STATUSES",
    "DEFAULT_COUPANG_CYCLE",
    "RETURN_STATUSES",
    "coupang_call_center",
    "coupang_claims",
    "coupang_inquiries",
    "coupang_orders",
    "coupang_products",
]

COUPANG_STATUSES = (
    "ACCEPT",
    "INSTRUCT",
    "DEPARTURE",
    "DELIVERING",
    "FINAL_DELIVERY",
    "NONE_TRACKING",
)
# Four of five new orders are accepted, one is already being prepared.
DEFAULT_COUPANG_CYCLE = ("INSTRUCT", "ACCEPT", "ACCEPT", "ACCEPT", "ACCEPT")
RETURN_STATUSES = ("RU", "UC", "CC", "PR")
# Every tenth order, from the sixth (600000005, INSTRUCT in the default cycle), is a bundle:
# three vendor items in one shipment box.
BUNDLE_EVERY, BUNDLE_FROM, BUNDLE_ITEMS = 10, 5, 3


def coupang_orders(
    vendor: str,
    count: int,
    start: datetime,
    days: int,
    seed: int,
    cycle: tuple[str, ...] = DEFAULT_COUPANG_CYCLE,
) -> list[dict[str, Any]]:
    """`count` order sheets spread over `days` days from `start`, oldest first; their
    statuses go round `cycle`."""
    rng = random.Random(f"{seed}:{vendor}")
    step = timedelta(days=days) / max(count, 1)
    orders = []
    for index in range(count):
        ordered = start + step * index
        name = rng.choice(NAMES)
        price = rng.randrange(5_000, 90_000, 100)
        quantity = rng.randint(1, 3)
        orders.append(
            {
                "shipmentBoxId": 600_000_000 + index,
                "orderId": 25_000_000_000 + index,
                "orderedAt": local(ordered),
                "paidAt": local(ordered + timedelta(seconds=30)),
                "status": cycle[index % len(cycle)],
                "orderer": {"name": masked(name), "email": "", "safeNumber": "0502-1234-5678"},
                "receiver": {
                    "name": masked(rng.choice(NAMES)),
                    "safeNumber": "0502-8765-4321",
                    "addr1": rng.choice(STREETS),
                    "addr2": f"{rng.randint(101, 1203)}호",
                    "postCode": f"{rng.randint(10000, 63999)}",
                },
                "orderItems": [
                    {
                        "vendorItemId": 70_000_000 + (index + extra) % 20,
                        "vendorItemName": rng.choice(GOODS),
                        "sellerProductId": 1_000_000 + (index + extra) % 20,
                        "shippingCount": quantity,
                        "salesPrice": price,
                        "orderPrice": price * quantity,
                        "invoiceNumber": "",
                    }
                    for extra in range(BUNDLE_ITEMS if index % BUNDLE_EVERY == BUNDLE_FROM else 1)
                ],
                "shippingPrice": 0 if price >= 30_000 else 3_000,
                "deliveryCompanyName": "",
                "invoiceNumber": "",
                "shipmentType": "THIRD_PARTY",
            }
        )
    return orders


def coupang_claims(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A cancel or return request for every seventh order; the returns' statuses go round
    RU (stop shipment asked), UC (received), CC (completed), PR (Coupang's check asked)."""
    claims = []
    for index, order in enumerate(orders[::7]):
        claim = {
            "receiptId": 40_000_000 + index,
            "orderId": order["orderId"],
            "cancelType": "RETURN" if index % 2 else "CANCEL",
            "receiptStatus": "RETURNS_UNCHECKED",
            "createdAt": order["paidAt"],
            "cancelCount": 1,
            "releaseStatus": "N",
        }
        if claim["cancelType"] == "RETURN":
            claim["status"] = RETURN_STATUSES[index // 2 % len(RETURN_STATUSES)]
            if claim["status"] == "RU":
                claim["receiptStatus"] = "RELEASE_STOP_UNCHECKED"
        claims.append(claim)
    return claims


def coupang_inquiries(vendor: str, count: int, start: datetime, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(f"{seed}:{vendor}:inquiries")
    return [
        {
            "inquiryId": 3_000_000 + index,
            "productId": 1_000_000 + index % 20,
            "vendorItemId": 70_000_000 + index % 20,
            "content": rng.choice(
                ("배송 언제 되나요?", "사이즈 교환 가능한가요?", "재입고 예정 있나요?")
            ),
            "inquiryAt": local(start + timedelta(hours=3 * index)),
            "commentDtoList": [],
        }
        for index in range(count)
    ]


def coupang_call_center(
    vendor: str, count: int, start: datetime, seed: int
) -> list[dict[str, Any]]:
    """Inquiries Coupang's call center passes on, one every 6 hours from `start`."""
    rng = random.Random(f"{seed}:{vendor}:call-center")
    return [
        {
            "inquiryId": 5_000_000 + index,
            "orderId": 25_000_000_000 + index,
            "content": rng.choice(("배송지 변경 요청", "부분 취소 가능 여부 문의")),
            "inquiryAt": local(start + timedelta(hours=6 * index)),
            "partnerCounselingStatus": "NO_ANSWER",
            "replies": [],
        }
        for index in range(count)
    ]


def coupang_products(vendor: str, count: int, seed: int) -> dict[int, dict[str, Any]]:
    rng = random.Random(f"{seed}:{vendor}:products")
    products = {}
    for index in range(count):
        price = rng.randrange(5_000, 90_000, 100)
        products[1_000_000 + index] = {
            "sellerProductId": 1_000_000 + index,
            "sellerProductName": rng.choice(GOODS),
            "vendorId": vendor,
            "statusName": "승인완료",
            "items": [
                {
                    "vendorItemId": 70_000_000 + index,
                    "itemName": "기본",
                    "originalPrice": price + 5_000,
                    "salePrice": price,
                    "maximumBuyCount": rng.randint(0, 500),
                }
            ],
        }
    return products
