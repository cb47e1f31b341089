"""SWRTransport and AsyncSWRTransport against a real origin on 127.0.0.1.

Every test runs with both transports (the ``client`` fixture); time moves with the
engine's injected clock, and background work is waited for, never slept through.
"""

from __future__ import annotations

import email.utils
import threading
import time

import httpx
import pytest

from swr import StaleEngine, Status
from swr.http import CacheInfo, CachePolicy, SWRTransport
from swr.storage import LMDBStorage
from tests.helpers import wait_until
from tests.http.conftest import AsyncDriver, SyncDriver
from tests.http.origin import Drop, Origin, Reply


def info(response: httpx.Response) -> CacheInfo:
    swr = response.extensions["swr"]
    assert isinstance(swr, CacheInfo)
    return swr


def counter(origin: Origin, path: str, reply: Reply) -> None:
    """A route answering ``reply`` with a body that counts the calls."""

    def route(seen: object) -> Reply:
        n = origin.count(path, None)
        return Reply(reply.status, dict(reply.headers), reply.body or f"v{n}".encode())

    origin.routes[path] = route


# -- freshness --------------------------------------------------------------------


def test_max_age_serves_hits_then_refetches(origin, client, clock):
    counter(origin, "/a", Reply(headers={"Cache-Control": "max-age=10"}))
    url = origin.url("/a")
    first = client.get(url)
    assert (first.status_code, first.text, info(first).status) == (200, "v1", Status.MISS)
    clock.advance(9)
    second = client.get(url)
    assert (second.text, info(second).status) == ("v1", Status.HIT)
    assert second.headers["age"] == "9"
    assert info(second).age == pytest.approx(9)
    assert origin.count("/a") == 1
    clock.advance(2)
    third = client.get(url)
    assert (third.text, info(third).status) == ("v2", Status.MISS)
    assert origin.count("/a") == 2


def test_age_header_shortens_freshness(origin, client, clock):
    counter(origin, "/a", Reply(headers={"Cache-Control": "max-age=60", "Age": "50"}))
    url = origin.url("/a")
    client.get(url)
    clock.advance(9)
    hit = client.get(url)
    assert info(hit).status is Status.HIT
    assert hit.headers["age"] == "59"
    clock.advance(2)
    assert client.get(url).text == "v2"


def test_s_maxage_only_in_a_shared_cache(origin, make_client, clock):
    headers = {"Cache-Control": "max-age=5, s-maxage=50"}
    counter(origin, "/a", Reply(headers=headers))
    private, shared = make_client(), make_client(shared=True)
    url = origin.url("/a")
    private.get(url)
    shared.get(url)
    clock.advance(10)
    assert info(private.get(url)).status is Status.MISS
    assert info(shared.get(url)).status is Status.HIT


def test_expires_relative_to_date(origin, client, clock):
    now = time.time()

    def route(seen: object) -> Reply:
        return Reply(
            headers={
                "Date": email.utils.formatdate(now, usegmt=True),
                "Expires": email.utils.formatdate(now + 30, usegmt=True),
            },
            body=b"x",
        )

    origin.routes["/e"] = route
    url = origin.url("/e")
    client.get(url)
    clock.advance(29)
    assert info(client.get(url)).status is Status.HIT
    clock.advance(2)
    assert info(client.get(url)).status is Status.MISS
    assert origin.count("/e") == 2


def test_invalid_expires_is_already_stale(origin, client):
    counter(origin, "/e", Reply(headers={"Expires": "0"}))
    url = origin.url("/e")
    client.get(url)
    client.get(url)
    assert origin.count("/e") == 2


def test_no_store_is_never_stored(origin, client):
    counter(origin, "/n", Reply(headers={"Cache-Control": "no-store, max-age=60"}))
    url = origin.url("/n")
    assert [client.get(url).text for _ in range(3)] == ["v1", "v2", "v3"]
    assert info(client.get(url)).status is Status.MISS


def test_private_is_stored_only_by_a_private_cache(origin, make_client):
    counter(origin, "/p", Reply(headers={"Cache-Control": "private, max-age=60"}))
    url = origin.url("/p")
    private, shared = make_client(), make_client(shared=True)
    private.get(url)
    assert info(private.get(url)).status is Status.HIT
    shared.get(url)
    assert info(shared.get(url)).status is Status.MISS
    assert origin.count("/p") == 3


def test_shared_cache_skips_authorized_requests_unless_public(origin, make_client):
    counter(origin, "/auth", Reply(headers={"Cache-Control": "max-age=60"}))
    counter(origin, "/pub", Reply(headers={"Cache-Control": "public, max-age=60"}))
    shared = make_client(shared=True)
    for path in ("/auth", "/pub"):
        for _ in range(2):
            shared.get(origin.url(path), headers={"Authorization": "Bearer t"})
    assert (origin.count("/auth"), origin.count("/pub")) == (2, 1)


def test_responses_that_say_nothing_get_the_default_windows(origin, make_client, clock):
    counter(origin, "/d", Reply())
    url = origin.url("/d")
    default = make_client()  # CachePolicy's default_ttl: fresh 60 s
    default.get(url)
    clock.advance(59)
    assert info(default.get(url)).status is Status.HIT
    off = make_client(default_ttl=None)
    off.get(url)
    assert info(off.get(url)).status is Status.MISS
    assert origin.count("/d") == 3


def test_statuses_not_cacheable_by_default_are_not_stored(origin, client):
    counter(origin, "/created", Reply(status=201))
    url = origin.url("/created")
    client.get(url)
    client.get(url)
    assert origin.count("/created") == 2


def test_no_cache_response_is_revalidated_every_time(origin, client):
    def route(seen) -> Reply:
        if seen.headers.get("if-none-match") == '"t1"':
            return Reply(304, {"ETag": '"t1"', "Cache-Control": "no-cache"})
        return Reply(200, {"ETag": '"t1"', "Cache-Control": "no-cache"}, b"body")

    origin.routes["/nc"] = route
    url = origin.url("/nc")
    first = client.get(url)
    second = client.get(url)
    assert (first.text, second.text) == ("body", "body")
    assert info(second).revalidated
    assert info(second).status is Status.MISS  # the engine's status for a forced fetch
    calls = origin.calls("/nc")
    assert len(calls) == 2
    assert "if-none-match" not in calls[0].headers
    assert calls[1].headers["if-none-match"] == '"t1"'


# -- stale-while-revalidate -----------------------------------------------------------


def test_stale_is_served_at_once_while_one_background_revalidation_runs(origin, client, clock):
    release = threading.Event()

    def route(seen) -> Reply:
        n = origin.count("/s")
        if n > 1:
            release.wait(10)
        return Reply(
            headers={"Cache-Control": "max-age=10, stale-while-revalidate=60"},
            body=f"v{n}".encode(),
        )

    origin.routes["/s"] = route
    url = origin.url("/s")
    client.get(url)
    clock.advance(15)
    started = time.monotonic()
    stale = [client.get(url) for _ in range(3)]
    assert time.monotonic() - started < 5  # the origin is blocked: nobody waited for it
    assert [(r.text, info(r).status) for r in stale] == [("v1", Status.STALE)] * 3
    wait_until(lambda: origin.count("/s") == 2)
    release.set()
    wait_until(lambda: client.stats().refreshes_succeeded == 1)
    fresh = client.get(url)
    assert (fresh.text, info(fresh).status) == ("v2", Status.HIT)
    assert origin.count("/s") == 2


def test_background_revalidation_with_304_keeps_the_body(origin, client, clock):
    def route(seen) -> Reply:
        headers = {
            "Cache-Control": "max-age=10, stale-while-revalidate=60",
            "Last-Modified": "Tue, 01 Oct 2024 10:00:00 GMT",
            "X-Version": str(origin.count("/r")),
        }
        if seen.headers.get("if-modified-since") == headers["Last-Modified"]:
            return Reply(304, headers)
        return Reply(200, headers, b"payload")

    origin.routes["/r"] = route
    url = origin.url("/r")
    client.get(url)
    clock.advance(15)
    assert info(client.get(url)).status is Status.STALE
    wait_until(lambda: client.stats().refreshes_succeeded == 1)
    renewed = client.get(url)
    assert (renewed.text, info(renewed).status) == ("payload", Status.HIT)
    assert renewed.headers["x-version"] == "2"  # headers updated from the 304
    assert renewed.headers["content-length"] == "7"
    assert origin.calls("/r")[1].headers["if-modified-since"] == "Tue, 01 Oct 2024 10:00:00 GMT"


def test_expired_entry_with_etag_is_revalidated_in_the_foreground(origin, client, clock):
    def route(seen) -> Reply:
        if seen.headers.get("if-none-match") == '"a"':
            return Reply(304, {"ETag": '"a"', "Cache-Control": "max-age=10"})
        return Reply(200, {"ETag": '"a"', "Cache-Control": "max-age=10"}, b"big body")

    origin.routes["/t"] = route
    url = origin.url("/t")
    client.get(url)
    clock.advance(3600)  # past every window but kept for revalidation
    again = client.get(url)
    assert (again.text, info(again).revalidated) == ("big body", True)
    clock.advance(5)
    assert info(client.get(url)).status is Status.HIT
    assert origin.count("/t") == 2


# -- stale-if-error ----------------------------------------------------------------


@pytest.mark.parametrize("failure", ["drop", "503"])
def test_stale_if_error_serves_fallback(origin, client, clock, failure):
    down = threading.Event()

    def route(seen) -> Reply:
        if down.is_set():
            if failure == "drop":
                raise Drop
            return Reply(503, body=b"down")
        return Reply(headers={"Cache-Control": "max-age=10, stale-if-error=60"}, body=b"good")

    origin.routes["/f"] = route
    url = origin.url("/f")
    client.get(url)
    down.set()
    clock.advance(30)
    fallback = client.get(url)
    assert (fallback.status_code, fallback.text, info(fallback).status) == (
        200,
        "good",
        Status.FALLBACK,
    )
    assert fallback.headers["age"] == "30"


def test_past_stale_if_error_the_error_reaches_the_caller(origin, client, clock):
    down = threading.Event()

    def route(seen) -> Reply:
        if down.is_set():
            return Reply(502, body=b"bad gateway")
        headers = {"Cache-Control": "max-age=10, stale-if-error=20", "ETag": '"e"'}
        return Reply(headers=headers, body=b"good")

    origin.routes["/f"] = route
    url = origin.url("/f")
    client.get(url)
    down.set()
    clock.advance(31)  # kept for revalidation (ETag), but past stale-if-error
    error = client.get(url)
    assert (error.status_code, error.text) == (502, "bad gateway")


def test_origin_error_without_a_stored_response(origin, client):
    origin.routes["/x"] = lambda seen: Reply(500, body=b"boom")
    assert client.get(origin.url("/x")).status_code == 500
    origin.routes["/y"] = lambda seen: (_ for _ in ()).throw(Drop())
    with pytest.raises(httpx.TransportError):
        client.get(origin.url("/y"))


def test_must_revalidate_forbids_stale_if_error(origin, client, clock):
    down = threading.Event()

    def route(seen) -> Reply:
        if down.is_set():
            return Reply(503, body=b"down")
        cc = "max-age=10, stale-if-error=60, must-revalidate"
        return Reply(headers={"Cache-Control": cc}, body=b"good")

    origin.routes["/m"] = route
    client.get(origin.url("/m"))
    down.set()
    clock.advance(15)
    assert client.get(origin.url("/m")).status_code == 503


def test_failing_origin_is_retried_only_after_a_backoff(origin, client, clock):
    down = threading.Event()

    def route(seen) -> Reply:
        if down.is_set():
            raise Drop
        return Reply(headers={"Cache-Control": "max-age=10, stale-if-error=600"}, body=b"ok")

    origin.routes["/b"] = route
    url = origin.url("/b")
    client.get(url)
    down.set()
    clock.advance(20)
    statuses = [info(client.get(url)).status for _ in range(5)]
    assert statuses == [Status.FALLBACK] * 5
    assert origin.count("/b") == 2  # one attempt, then the backoff (1 s) holds
    clock.advance(1.5)
    client.get(url)
    assert origin.count("/b") == 3
    client.get(url)
    assert origin.count("/b") == 3  # 2 s now
    down.clear()
    clock.advance(2.5)
    back = client.get(url)
    assert info(back).status is Status.EXPIRED
    assert origin.count("/b") == 4


# -- methods, invalidation ------------------------------------------------------------


def test_unsafe_methods_invalidate_the_url(origin, client):
    counter(origin, "/item", Reply(headers={"Cache-Control": "max-age=600"}))
    counter(origin, "/other", Reply(headers={"Cache-Control": "max-age=600"}))
    url = origin.url("/item")
    client.get(url)
    client.get(origin.url("/other"))
    assert info(client.get(url)).status is Status.HIT
    client.request("POST", url, content=b"new")
    assert client.get(url).text == "v3"  # GET, POST, GET
    assert info(client.get(origin.url("/other"))).status is Status.HIT


def test_unsafe_method_invalidates_its_location(origin, client):
    counter(origin, "/item", Reply(headers={"Cache-Control": "max-age=600"}))
    origin.routes["/items"] = lambda seen: Reply(201, {"Location": "/item"})
    client.get(origin.url("/item"))
    client.request("POST", origin.url("/items"))
    assert info(client.get(origin.url("/item"))).status is Status.MISS


def test_failed_unsafe_request_invalidates_nothing(origin, client):
    def route(seen) -> Reply:
        if seen.method == "DELETE":
            return Reply(500)
        return Reply(headers={"Cache-Control": "max-age=600"}, body=b"x")

    origin.routes["/item"] = route
    client.get(origin.url("/item"))
    client.request("DELETE", origin.url("/item"))
    assert info(client.get(origin.url("/item"))).status is Status.HIT


def test_head_is_cached_under_its_own_key_until_a_get_is_stored(origin, client):
    counter(origin, "/h", Reply(headers={"Cache-Control": "max-age=600"}))
    url = origin.url("/h")
    head = client.request("HEAD", url)
    assert head.content == b""
    assert client.request("HEAD", url).headers["content-length"] == "2"  # the GET's length
    get = client.get(url)
    assert get.text == "v2"
    assert info(client.request("HEAD", url)).status is Status.HIT
    assert info(client.get(url)).status is Status.HIT


def test_request_no_cache_refetches_and_no_store_bypasses(origin, client):
    counter(origin, "/q", Reply(headers={"Cache-Control": "max-age=600"}))
    url = origin.url("/q")
    client.get(url)
    refreshed = client.get(url, headers={"Cache-Control": "no-cache"})
    assert refreshed.text == "v2"
    assert client.get(url).text == "v2"  # the refetched response was stored
    bypass = client.get(url, headers={"Cache-Control": "no-store"})
    assert (bypass.text, info(bypass).key) == ("v3", "")
    assert client.get(url).text == "v2"
    client.get(url, headers={"Pragma": "no-cache"})
    assert origin.count("/q") == 4


def test_conditional_requests_of_the_caller_pass_through(origin, client):
    def route(seen) -> Reply:
        if seen.headers.get("if-none-match") == '"z"':
            return Reply(304, {"ETag": '"z"'})
        return Reply(200, {"ETag": '"z"', "Cache-Control": "max-age=600"}, b"zz")

    origin.routes["/c"] = route
    url = origin.url("/c")
    client.get(url)
    assert client.get(url, headers={"If-None-Match": '"z"'}).status_code == 304


# -- Vary ------------------------------------------------------------------------------


def test_vary_keeps_one_response_per_variant(origin, client):
    def route(seen) -> Reply:
        lang = seen.headers.get("accept-language", "none")
        return Reply(
            headers={"Cache-Control": "max-age=600", "Vary": "Accept-Language"},
            body=f"{lang}:{origin.count('/v')}".encode(),
        )

    origin.routes["/v"] = route
    url = origin.url("/v")
    en = client.get(url, headers={"Accept-Language": "en"})
    fr = client.get(url, headers={"Accept-Language": "fr"})
    assert (en.text, fr.text) == ("en:1", "fr:2")
    again = [client.get(url, headers={"Accept-Language": lang}) for lang in ("en", "fr", "en")]
    assert [r.text for r in again] == ["en:1", "fr:2", "en:1"]
    assert {info(r).status for r in again} == {Status.HIT}
    assert origin.count("/v") == 2
    client.request("PUT", url)  # invalidates every variant
    assert client.get(url, headers={"Accept-Language": "fr"}).text == "fr:3"


def test_vary_on_other_headers_replaces_the_variants(origin, client, clock):
    state = {"vary": "Accept-Language"}

    def route(seen) -> Reply:
        varied = seen.headers.get(state["vary"].lower(), "-")
        return Reply(
            headers={"Cache-Control": "max-age=10", "Vary": state["vary"]},
            body=f"{varied}:{origin.count('/vv')}".encode(),
        )

    origin.routes["/vv"] = route
    url = origin.url("/vv")
    both = {"Accept-Language": "en", "Accept": "text/a"}
    assert client.get(url, headers=both).text == "en:1"
    state["vary"] = "Accept"
    clock.advance(11)
    assert client.get(url, headers=both).text == "text/a:2"  # the variant, refetched
    other = {"Accept-Language": "en", "Accept": "text/b"}
    assert client.get(url, headers=other).text == "text/b:3"  # varies on Accept now
    assert client.get(url, headers=other).text == "text/b:3"
    assert client.get(url, headers=both).text == "text/a:4"
    assert origin.count("/vv") == 4


def test_vary_star_is_not_stored(origin, client):
    counter(origin, "/star", Reply(headers={"Cache-Control": "max-age=600", "Vary": "*"}))
    url = origin.url("/star")
    client.get(url)
    client.get(url)
    assert origin.count("/star") == 2


# -- bodies, storage ---------------------------------------------------------------------


def test_uncacheable_stream_is_passed_through_unread(origin, client):
    more = threading.Event()

    def chunks():
        yield b"first"
        more.wait(10)
        yield b"second"

    origin.routes["/stream"] = lambda seen: Reply(
        headers={"Cache-Control": "no-store"}, chunks=chunks()
    )
    url = origin.url("/stream")
    if isinstance(client, AsyncDriver):

        async def read() -> list[bytes]:
            async with client.client.stream("GET", url) as response:
                parts = response.aiter_raw()
                first = await parts.__anext__()
                more.set()  # the rest only comes after the first part was read
                return [first, b"".join([part async for part in parts])]

        assert client.run(read()) == [b"first", b"second"]
        return
    with client.client.stream("GET", url) as response:
        parts = response.iter_raw()
        assert next(parts) == b"first"  # arrived while the origin still holds the rest
        more.set()
        assert b"".join(parts) == b"second"


def test_cacheable_chunked_body_is_read_and_stored(origin, client):
    origin.routes["/chunked"] = lambda seen: Reply(
        headers={"Cache-Control": "max-age=60"}, chunks=iter([b"ab", b"cd"])
    )
    url = origin.url("/chunked")
    assert client.get(url).text == "abcd"
    hit = client.get(url)
    assert (hit.text, hit.headers["content-length"], info(hit).status) == ("abcd", "4", Status.HIT)
    assert "transfer-encoding" not in hit.headers


def test_status_header_is_opt_in(origin, make_client):
    counter(origin, "/h", Reply(headers={"Cache-Control": "max-age=60"}))
    plain, labelled = make_client(), make_client(status_header="X-Cache")
    plain.get(origin.url("/h"))
    assert "x-cache" not in plain.get(origin.url("/h")).headers
    assert labelled.get(origin.url("/h")).headers["x-cache"] == "MISS"
    assert labelled.get(origin.url("/h")).headers["x-cache"] == "HIT"


def test_gzip_body_is_stored_encoded_and_decoded_for_the_caller(origin, client):
    import gzip

    origin.routes["/gz"] = lambda seen: Reply(
        headers={"Cache-Control": "max-age=60", "Content-Encoding": "gzip"},
        body=gzip.compress(b"hello " * 100),
    )
    url = origin.url("/gz")
    assert client.get(url).text == "hello " * 100
    assert client.get(url).text == "hello " * 100


def test_lmdb_store_keeps_responses_across_engines(origin, clock, tmp_path):
    counter(origin, "/l", Reply(headers={"Cache-Control": "max-age=60", "ETag": '"1"'}))
    url = origin.url("/l")
    for expected in (Status.MISS, Status.HIT):
        with LMDBStorage(tmp_path / "db", clock=clock) as storage:
            driver = SyncDriver(clock, storage)
            response = driver.get(url)
            assert (response.text, info(response).status) == ("v1", expected)
            driver.close()
    assert origin.count("/l") == 1


def test_concurrent_misses_fetch_once(origin, make_client):
    release = threading.Event()

    def route(seen) -> Reply:
        release.wait(10)
        return Reply(headers={"Cache-Control": "max-age=60"}, body=b"once")

    origin.routes["/once"] = route
    client = make_client()
    if isinstance(client, AsyncDriver):
        import asyncio

        async def many():
            return await asyncio.gather(*(client.client.get(origin.url("/once")) for _ in range(5)))

        future = asyncio.run_coroutine_threadsafe(many(), client.loop)
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(5)
        future = pool.submit(
            lambda: list(pool.map(lambda _: client.get(origin.url("/once")), range(5)))
        )
    wait_until(lambda: origin.count("/once") >= 1)
    release.set()
    responses = future.result(10)
    assert [r.text for r in responses] == ["once"] * 5
    assert origin.count("/once") == 1


# -- configuration -----------------------------------------------------------------------


def test_wrong_engine_kind_is_refused(clock):
    from swr import AsyncStaleEngine
    from swr.http import AsyncSWRTransport

    with pytest.raises(TypeError, match="AsyncSWRTransport"):
        SWRTransport(AsyncStaleEngine(clock=clock))  # type: ignore[arg-type]
    with StaleEngine(clock=clock) as engine, pytest.raises(TypeError, match="SWRTransport"):
        AsyncSWRTransport(engine)  # type: ignore[arg-type]
    with StaleEngine(clock=clock) as engine, pytest.raises(TypeError, match="CachePolicy"):
        SWRTransport(engine, policy={"shared": True})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"keep_for_revalidation": -1}, "keep_for_revalidation"),
        ({"error_backoff": float("inf")}, "error_backoff"),
        ({"status_header": " "}, "status_header"),
        ({"default_ttl": 60}, "default_ttl"),
        ({"shared": "yes"}, "shared"),
    ],
)
def test_bad_policy_names_the_setting(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        CachePolicy(**kwargs)


def test_a_failing_storage_never_fails_an_unsafe_request(origin, clock):
    from structlog.testing import capture_logs

    from swr.storage import MemoryStorage, StorageUnavailableError

    class NoDeletes(MemoryStorage):
        def delete(self, key: str) -> bool:
            raise StorageUnavailableError("storage down")

    counter(origin, "/item", Reply(headers={"Cache-Control": "max-age=600"}))
    driver = SyncDriver(clock, NoDeletes(clock=clock))
    try:
        driver.get(origin.url("/item"))
        with capture_logs() as logs:
            posted = driver.request("POST", origin.url("/item"))
        assert posted.status_code == 200
        assert [e["event"] for e in logs] == ["storage_write_failed"] * 2
    finally:
        driver.close()
