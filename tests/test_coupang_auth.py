"""Coupang CEA HMAC signing, against the vector in MARKETS.md and the simulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import aiohttp
import pytest
from pydantic import SecretStr

from lanes import Lane
from markets import JobRequest, PermanentError
from markets.coupang.auth import CoupangAuth, authorization, sign, signed_date
from markets.credentials import Credentials, SettingsSource
from tests.fixtures_markets import (
    COUPANG_VENDOR,
    MakeMarkets,
    Running,
    market_settings,
    markets_config,
)

VECTOR_PATH = "/v2/providers/openapi/apis/api/v5/vendors/A00012345/ordersheets"
VECTOR_QUERY = "createdAtFrom=2025-07-15&createdAtTo=2025-07-16&maxPerPage=50&status=ACCEPT"
VECTOR_SIGNATURE = "df8e80365fc1f9d4d7f5aaf922a6b13e3316f331af4214b3f6cf5a532c344692"


def test_signature_matches_the_vector_byte_for_byte() -> None:
    """The formula of MARKETS.md gives the published vector exactly."""
    assert sign("test-secret-key", "240101T093005Z", "GET", VECTOR_PATH, VECTOR_QUERY) == (
        VECTOR_SIGNATURE
    )


def test_signed_date_is_utc_in_coupang_format() -> None:
    """yyMMdd'T'HHmmss'Z' in UTC, whatever the zone of the moment given."""
    moment = datetime(2024, 1, 1, 18, 30, 5, tzinfo=UTC).astimezone()
    assert signed_date(moment) == "240101T183005Z"


async def test_header_is_the_exact_cea_format() -> None:
    """The header, built at a fixed clock, is byte-for-byte the documented one."""
    credentials = Credentials(
        "coupang",
        SettingsSource(
            {
                "coupang": {
                    f"{COUPANG_VENDOR}_access_key": SecretStr("AK"),
                    f"{COUPANG_VENDOR}_secret_key": SecretStr("test-secret-key"),
                }
            }
        ),
    )
    auth = CoupangAuth(credentials, clock=lambda: datetime(2024, 1, 1, 9, 30, 5, tzinfo=UTC))
    signer = await auth.prepare(COUPANG_VENDOR, Lane.HIGH, None)
    headers = signer("GET", VECTOR_PATH, VECTOR_QUERY)
    assert headers == {
        "Authorization": "CEA algorithm=HmacSHA256, access-key=AK, signed-date=240101T093005Z, "
        f"signature={VECTOR_SIGNATURE}",
        "X-Requested-By": COUPANG_VENDOR,
    }
    assert authorization("AK", "240101T093005Z", VECTOR_SIGNATURE) == headers["Authorization"]


async def _get(url: str, header: str) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Authorization": header}) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize("separator", [", ", ","])
async def test_simulator_accepts_both_header_spacings(coupang_sim: Running, separator: str) -> None:
    """The simulator checks the signature like Coupang, with or without spaces after commas."""
    date_text = signed_date(datetime.now(UTC))
    today = date.today().isoformat()
    day = f"{today}%2B09:00"  # v5: yyyy-mm-dd+09:00, the + percent-encoded
    query = f"createdAtFrom={day}&createdAtTo={day}&maxPerPage=50&status=ACCEPT"
    signature = sign("test-secret-key", date_text, "GET", VECTOR_PATH, query)
    header = separator.join(
        [
            "CEA algorithm=HmacSHA256",
            "access-key=test-access-key",
            f"signed-date={date_text}",
            f"signature={signature}",
        ]
    )
    status, _body = await _get(f"{coupang_sim.url}{VECTOR_PATH}?{query}", header)
    assert status == 200


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda header: header.replace("signature=", "signature=0"), "HMAC format is invalid."),
        (lambda header: header[:-1] + ("0" if header[-1] != "0" else "1"), "Invalid signature."),
    ],
)
async def test_simulator_refuses_bad_signatures(
    coupang_sim: Running, mangle: Callable[[str], str], message: str
) -> None:
    """A malformed or wrong signature gets 401 with Coupang's own message."""
    date_text = signed_date(datetime.now(UTC))
    signature = sign("test-secret-key", date_text, "GET", VECTOR_PATH, "")
    header = authorization("test-access-key", date_text, signature)
    status, body = await _get(f"{coupang_sim.url}{VECTOR_PATH}", mangle(header))
    assert (status, body["message"]) == (401, message)


async def test_simulator_refuses_an_expired_signature(coupang_sim: Running) -> None:
    """A signed-date more than five minutes off is 'Specified signature is expired.'"""
    date_text = signed_date(datetime.now(UTC) - timedelta(minutes=6))
    signature = sign("test-secret-key", date_text, "GET", VECTOR_PATH, "")
    header = authorization("test-access-key", date_text, signature)
    status, body = await _get(f"{coupang_sim.url}{VECTOR_PATH}", header)
    assert (status, body["message"]) == (401, "Specified signature is expired.")


async def test_wrong_secret_is_a_permanent_401(
    coupang_sim: Running, make_markets: MakeMarkets
) -> None:
    """Keys the market refuses end in PermanentError (401), sent once, never retried."""
    settings = market_settings(
        coupang={
            f"{COUPANG_VENDOR}_access_key": "test-access-key",
            f"{COUPANG_VENDOR}_secret_key": "nope",
        }
    )
    markets = await make_markets(markets_config(coupang=coupang_sim.url), settings=settings)
    request = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1000000})
    with pytest.raises(PermanentError) as raised:
        await markets.run(request, Lane.HIGH)
    assert (raised.value.status, raised.value.message) == (401, "Invalid signature.")
    assert coupang_sim.state.arrived["product"] == 1


async def test_per_seller_keys_are_used_and_market_wide_ones_never(
    coupang_sim: Running, make_markets: MakeMarkets
) -> None:
    """`<seller>.secret_key` is used for that seller; a market-wide key is not."""
    settings = market_settings(
        coupang={
            "access_key": "wrong",
            "secret_key": "wrong",
            f"{COUPANG_VENDOR}.access_key": "test-access-key",
            f"{COUPANG_VENDOR}_secret_key": "test-secret-key",
        }
    )
    markets = await make_markets(markets_config(coupang=coupang_sim.url), settings=settings)
    request = JobRequest("get_product", "coupang", COUPANG_VENDOR, {"seller_product_id": 1000000})
    result = await markets.run(request, Lane.HIGH)
    assert result.data["product"]["sellerProductId"] == 1000000
