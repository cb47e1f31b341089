"""RFC 9111 details of the transports, against a real origin on 127.0.0.1, sync and async.

- a ``304`` renews the stored entry with ``touch`` (no body rewrite);
- ``HEAD`` is answered from a stored ``GET`` response;
- the request directives ``only-if-cached``, ``max-age``, ``min-fresh``, ``max-stale``;
  the response's qualified ``no-cache="field"``;
- the age of a response per RFC 9111 section 4.2.3 (``Date``, ``Age``, response delay);
- engine errors (an open circuit) reach httpx users as ``httpx.TransportError``.
"""

from __future__ import annotations

import email.utils
import threading
from typing import Any

import httpx
import pytest

from swr import CircuitBreaker, CircuitOpenError, FetchTimeoutError, RefreshOptions, Status
from swr.http import CacheInfo, OriginTimeoutError
from swr.storage import LMDBStorage, MemoryStorage
from tests.helpers import wait_until
from tests.http.origin import Drop, Origin, Reply


def info(response: httpx.Response) -> CacheInfo:
    swr = response.extensions["swr"]
    assert isinstance(swr, CacheInfo)
    return swr


class CountingMemory(MemoryStorage):
    """A memory storage counting payload writes (``set`` and kin) and renewals (``touch``)."""

    def __init__(self, clock: Any) -> None:
        super().__init__(clock=clock)
        self.sets: list[str] = []
        self.touches: list[str] = []

    def set(self, key: str, entry: Any) -> None:
        self.sets.append(key)
        super().set(key, entry)

    def set_and_release(self, key: str, entry: Any, token: str) -> None:
        self.sets.append(key)
        super().set_and_release(key, entry, token)

    def set_many(self, entries: Any) -> None:
        self.sets.extend(entries)
        super().set_many(entries)

    def touch(self, key: str, times: Any) -> bool:
        self.touches.append(key)
        return super().touch(key, times)


def etag_route(origin: Origin, path: str, cache_control: str, body: bytes = b"payload") -> None:
    def route(seen: Any) -> Reply:
        headers = {"ETag": '"e1"', "Cache-Control": cache_control}
        if seen.headers.get("if-none-match") == '"e1"':
            return Reply(304, headers)
        return Reply(200, headers, body)

    origin.routes[path] = route


# -- 1. a 304 renews the entry without rewriting the body -------------------------------


def test_foreground_304_touches_the_entry_and_keeps_the_body(origin, make_client, clock):
    storage = CountingMemory(clock)
    client = make_client(storage=storage)
    etag_route(origin, "/t", "max-age=10")
    url = origin.url("/t")
    client.get(url)
    assert len(storage.sets) == 1
    clock.advance(3600)  # past every window, kept for revalidation
    again = client.get(url)
    assert (again.text, info(again).revalidated) == ("payload", True)
    assert again.headers["age"] == "0"
    assert len(storage.sets) == 1  # the body was not written again
    assert len(storage.touches) == 1
    clock.advance(9)  # the 304's windows: fresh for 10 s from the 304
    hit = client.get(url)
    assert (hit.text, info(hit).status, hit.headers["age"]) == ("payload", Status.HIT, "9")
    assert origin.count("/t") == 2
    clock.advance(2)
    assert info(client.get(url)).revalidated
    assert (len(storage.sets), len(storage.touches), origin.count("/t")) == (1, 2, 3)


def test_background_304_touches_the_entry(origin, make_client, clock):
    storage = CountingMemory(clock)
    client = make_client(storage=storage)
    etag_route(origin, "/b", "max-age=10, stale-while-revalidate=60")
    url = origin.url("/b")
    client.get(url)
    clock.advance(15)
    assert info(client.get(url)).status is Status.STALE
    wait_until(lambda: client.stats().refreshes_succeeded == 1)
    renewed = client.get(url)
    assert (renewed.text, info(renewed).status) == ("payload", Status.HIT)
    assert (len(storage.sets), len(storage.touches)) == (1, 1)


def test_304_with_new_header_values_rewrites_the_record(origin, make_client, clock):
    storage = CountingMemory(clock)
    client = make_client(storage=storage)
    versions = iter(["1", "2"])

    def route(seen: Any) -> Reply:
        headers = {"ETag": '"e1"', "Cache-Control": "max-age=10", "X-Version": next(versions)}
        if seen.headers.get("if-none-match") == '"e1"':
            return Reply(304, headers)
        return Reply(200, headers, b"payload")

    origin.routes["/v"] = route
    url = origin.url("/v")
    client.get(url)
    clock.advance(3600)
    again = client.get(url)
    assert (again.text, again.headers["x-version"]) == ("payload", "2")
    assert len(storage.sets) == 2  # the stored headers changed (RFC 9111 section 4.3.4)


# -- 2. HEAD from a stored GET ---------------------------------------------------------------


def test_head_is_answered_from_a_stored_get(origin, client, clock):
    origin.routes["/h"] = lambda seen: Reply(
        headers={"Cache-Control": "max-age=600", "X-Kind": "get"}, body=b"twelve bytes"
    )
    url = origin.url("/h")
    client.get(url)
    clock.advance(5)
    head = client.request("HEAD", url)
    assert (head.status_code, head.content, info(head).status) == (200, b"", Status.HIT)
    assert head.headers["content-length"] == "12"
    assert head.headers["x-kind"] == "get"
    assert head.headers["age"] == "5"
    assert origin.count("/h", "HEAD") == 0


def test_head_without_a_stored_get_goes_to_the_origin(origin, client):
    origin.routes["/h"] = lambda seen: Reply(headers={"Cache-Control": "max-age=600"}, body=b"x")
    head = client.request("HEAD", origin.url("/h"))
    assert (head.status_code, head.content) == (200, b"")
    assert origin.count("/h", "HEAD") == 1


# -- 3. request directives -------------------------------------------------------------------


def test_only_if_cached_answers_504_when_nothing_is_stored(origin, client):
    origin.routes["/o"] = lambda seen: Reply(headers={"Cache-Control": "max-age=60"}, body=b"o")
    url = origin.url("/o")
    miss = client.get(url, headers={"Cache-Control": "only-if-cached"})
    assert miss.status_code == 504
    assert origin.count("/o") == 0
    client.get(url)
    hit = client.get(url, headers={"Cache-Control": "only-if-cached"})
    assert (hit.status_code, hit.text, info(hit).status) == (200, "o", Status.HIT)
    assert origin.count("/o") == 1


def test_only_if_cached_refuses_a_response_that_needs_revalidation(origin, client, clock):
    etag_route(origin, "/o", "max-age=10")
    url = origin.url("/o")
    client.get(url)
    clock.advance(20)
    assert client.get(url, headers={"Cache-Control": "only-if-cached"}).status_code == 504
    assert origin.count("/o") == 1
    stale = client.get(url, headers={"Cache-Control": "only-if-cached, max-stale=30"})
    assert (stale.status_code, stale.text, info(stale).status) == (200, "payload", Status.STALE)
    assert origin.count("/o") == 1


def test_request_max_age_refetches_older_responses(origin, client, clock):
    etag_route(origin, "/m", "max-age=60")
    url = origin.url("/m")
    client.get(url)
    clock.advance(30)
    assert info(client.get(url, headers={"Cache-Control": "max-age=40"})).status is Status.HIT
    assert origin.count("/m") == 1
    young = client.get(url, headers={"Cache-Control": "max-age=20"})
    assert (young.text, info(young).revalidated, young.headers["age"]) == ("payload", True, "0")
    assert origin.count("/m") == 2


def test_min_fresh_refetches_responses_about_to_go_stale(origin, client, clock):
    etag_route(origin, "/f", "max-age=60")
    url = origin.url("/f")
    client.get(url)
    clock.advance(50)
    assert info(client.get(url, headers={"Cache-Control": "min-fresh=5"})).status is Status.HIT
    assert origin.count("/f") == 1
    client.get(url, headers={"Cache-Control": "min-fresh=20"})
    assert origin.count("/f") == 2


@pytest.mark.parametrize("directive", ["max-stale=30", "max-stale"])
def test_max_stale_serves_a_stale_response_without_the_origin(origin, client, clock, directive):
    etag_route(origin, "/s", "max-age=10")
    url = origin.url("/s")
    client.get(url)
    clock.advance(25)
    stale = client.get(url, headers={"Cache-Control": directive})
    assert (stale.text, info(stale).status, stale.headers["age"]) == ("payload", Status.STALE, "25")
    assert origin.count("/s") == 1


def test_max_stale_too_short_or_must_revalidate_goes_to_the_origin(origin, client, clock):
    etag_route(origin, "/s", "max-age=10")
    etag_route(origin, "/mr", "max-age=10, must-revalidate")
    client.get(origin.url("/s"))
    client.get(origin.url("/mr"))
    clock.advance(25)
    client.get(origin.url("/s"), headers={"Cache-Control": "max-stale=5"})
    client.get(origin.url("/mr"), headers={"Cache-Control": "max-stale"})
    assert (origin.count("/s"), origin.count("/mr")) == (2, 2)


def test_qualified_no_cache_drops_the_field_and_keeps_the_response(origin, client):
    origin.routes["/q"] = lambda seen: Reply(
        headers={"Cache-Control": 'max-age=60, no-cache="Set-Cookie"', "Set-Cookie": "s=1"},
        body=b"q",
    )
    url = origin.url("/q")
    first = client.get(url)
    assert first.headers["set-cookie"] == "s=1"  # the origin's own response keeps it
    hit = client.get(url)
    assert (hit.text, info(hit).status) == ("q", Status.HIT)
    assert "set-cookie" not in hit.headers
    assert origin.count("/q") == 1


# -- age (RFC 9111 section 4.2.3) ------------------------------------------------------------


def test_age_counts_the_date_of_a_response_without_age(origin, client, clock):
    origin.routes["/d"] = lambda seen: Reply(
        headers={
            "Cache-Control": "max-age=600",
            "Date": email.utils.formatdate(clock() - 100, usegmt=True),
        },
        body=b"d",
    )
    url = origin.url("/d")
    client.get(url)
    clock.advance(499)
    hit = client.get(url)
    assert (info(hit).status, hit.headers["age"]) == (Status.HIT, "599")
    clock.advance(2)
    assert info(client.get(url)).status is Status.MISS


def test_age_adds_the_response_delay(origin, client, clock):
    def route(seen: Any) -> Reply:
        clock.advance(5)  # the origin took 5 s to answer
        return Reply(headers={"Cache-Control": "max-age=60", "Age": "10"}, body=b"a")

    origin.routes["/a"] = route
    url = origin.url("/a")
    client.get(url)
    hit = client.get(url)
    assert (info(hit).status, hit.headers["age"]) == (Status.HIT, "15")
    clock.advance(44)
    assert info(client.get(url)).status is Status.HIT
    clock.advance(2)
    assert info(client.get(url)).status is Status.MISS


# -- 4. engine errors as httpx errors ---------------------------------------------------------


def test_open_circuit_is_an_httpx_transport_error(origin, make_client):
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=600)
    client = make_client(engine_kwargs={"breaker": breaker})

    def down(seen: Any) -> Reply:
        raise Drop

    origin.routes["/x"] = down
    with pytest.raises(httpx.TransportError):
        client.get(origin.url("/x"))
    assert breaker.state == "open"
    with pytest.raises(httpx.ConnectError) as raised:
        client.get(origin.url("/y"))
    assert isinstance(raised.value.__cause__, CircuitOpenError)
    assert raised.value.request.url == origin.url("/y")
    assert origin.count("/y") == 0


def test_fetch_timeout_is_an_httpx_timeout(origin, make_client):
    client = make_client(engine_kwargs={"refresh": RefreshOptions(timeout=0.2)})
    release = threading.Event()
    arrived = threading.Event()

    def slow(seen: Any) -> Reply:
        arrived.set()
        release.wait(5)
        return Reply(headers={"Cache-Control": "max-age=60"}, body=b"late")

    origin.routes["/slow"] = slow
    url = origin.url("/slow")
    leader = None
    if client.kind == "sync":
        # A thread's own fetch cannot be interrupted: the thread engine times out the
        # wait of a second caller for it.
        leader = threading.Thread(target=client.get, args=(url,))
        leader.start()
        assert arrived.wait(5)
    try:
        with pytest.raises(httpx.TimeoutException) as raised:
            client.get(url)
    finally:
        release.set()
        if leader is not None:
            leader.join(10)
    assert isinstance(raised.value, OriginTimeoutError)
    assert isinstance(raised.value.__cause__, FetchTimeoutError)


# -- byte storages renew in place too ------------------------------------------------------


class CountingLMDB(LMDBStorage):
    """An LMDB storage counting payload writes and renewals (``touch``)."""

    def __init__(self, path: Any) -> None:
        super().__init__(path, read_cache=0)  # no read-cache view: the engine uses this one
        self.sets: list[str] = []
        self.touches: list[str] = []

    def set(self, key: str, entry: Any) -> None:
        self.sets.append(key)
        super().set(key, entry)

    def set_and_release(self, key: str, entry: Any, token: str) -> Any:
        self.sets.append(key)
        return super().set_and_release(key, entry, token)

    def touch(self, key: str, times: Any) -> bool:
        self.touches.append(key)
        return super().touch(key, times)


def test_304_renews_an_lmdb_entry_with_touch(origin, make_client, clock, tmp_path):
    storage = CountingLMDB(tmp_path / "http")
    client = make_client(storage=storage)
    etag_route(origin, "/l", "max-age=10")
    url = origin.url("/l")
    client.get(url)
    clock.advance(3600)
    again = client.get(url)
    assert (again.text, info(again).revalidated) == ("payload", True)
    clock.advance(9)
    hit = client.get(url)
    assert (hit.text, info(hit).status, hit.headers["age"]) == ("payload", Status.HIT, "9")
    assert origin.count("/l") == 2
    assert (len(storage.sets), len(storage.touches)) == (1, 1)


def test_head_and_request_directives_follow_vary(origin, client, clock):
    def route(seen: Any) -> Reply:
        lang = seen.headers.get("accept-language", "none")
        return Reply(
            headers={"Cache-Control": "max-age=10", "Vary": "Accept-Language", "ETag": '"v"'},
            body=lang.encode(),
        )

    origin.routes["/v"] = route
    url = origin.url("/v")
    client.get(url, headers={"Accept-Language": "fr"})
    head = client.request("HEAD", url, headers={"Accept-Language": "fr"})
    assert (info(head).status, head.headers["content-length"]) == (Status.HIT, "2")
    other = client.get(url, headers={"Accept-Language": "de", "Cache-Control": "only-if-cached"})
    assert other.status_code == 504
    clock.advance(20)
    stale = client.get(url, headers={"Accept-Language": "fr", "Cache-Control": "max-stale"})
    assert (stale.text, info(stale).status) == ("fr", Status.STALE)
    assert (origin.count("/v"), origin.count("/v", "HEAD")) == (1, 0)


def test_conditional_refresh_of_a_variant_touches_it(origin, make_client, clock):
    storage = CountingMemory(clock)
    client = make_client(storage=storage)

    def route(seen: Any) -> Reply:
        headers = {"Cache-Control": "max-age=10", "Vary": "Accept-Language", "ETag": '"v"'}
        if seen.headers.get("if-none-match") == '"v"':
            return Reply(304, headers)
        return Reply(headers=headers, body=b"body")

    origin.routes["/v"] = route
    url = origin.url("/v")
    client.get(url, headers={"Accept-Language": "fr"})
    writes = len(storage.sets)  # the pointer and the variant
    clock.advance(3600)
    again = client.get(url, headers={"Accept-Language": "fr"})
    assert (again.text, info(again).revalidated) == ("body", True)
    assert origin.calls("/v")[1].headers["if-none-match"] == '"v"'
    assert len(storage.sets) == writes  # nothing rewritten: neither pointer nor variant
    assert len(storage.touches) == 1
    assert "|" in storage.touches[0]  # the variant's key
