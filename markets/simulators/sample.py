"""Realistic-looking sample data the Korean markets' simulators share: names, goods,
addresses and the markets' local time."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["GOODS", "KST", "NAMES", "STREETS", "local", "masked"]

KST = timezone(timedelta(hours=9))
NAMES = ("김민준", "이서연", "박지호", "최수아", "정도윤", "강하은", "조예준", "윤지우")
GOODS = ("무선 이어폰", "스테인리스 텀블러 500ml", "면 티셔츠 L", "캠핑 의자", "유기농 쌀 10kg")
STREETS = (
    "서울특별시 강남구 테헤란로 123",
    "부산광역시 해운대구 센텀로 45",
    "대전광역시 유성구 대학로 99",
)


def masked(name: str) -> str:
    return name[0] + "*" + name[-1]


def local(moment: datetime) -> str:
    return moment.astimezone(KST).strftime("%Y-%m-%dT%H:%M:%S")
