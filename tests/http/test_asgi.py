"""CacheMiddleware and cache_route on a FastAPI app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse

from swr import AsyncStaleEngine, CacheTTL, StaleEngine
from swr.asgi import CacheMiddleware, cache_route
from swr.testing import FakeClock
from tests.helpers import wait_until
from tests.http.server import serve

TTL = CacheTTL(fresh=60, stale=300, expired=3600)


@dataclass
class Handler:
    calls: dict[str, int] = field(default_factory=dict)
    mode: str = "ok"  # ok | raise | 503 | 404
    release: threading.Event = field(default_factory=threading.Event)
    block: bool = False

    def hit(self, name: str) -> int:
        self.calls[name] = self.calls.get(name, 0) + 1
        return self.calls[name]

    def fail(self) -> None:
        if self.mode == "raise":
            raise RuntimeError("handler broke")


def make_app(clock: FakeClock, handler: Handler) -> FastAPI:
    engines: list[AsyncStaleEngine] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        for engine in engines:
            await engine.aclose()

    app = FastAPI(lifespan=lifespan)
    engine = AsyncStaleEngine(ttl=TTL, clock=clock, namespace="mw")
    routes = AsyncStaleEngine(ttl=TTL, clock=clock, namespace="routes")
    engines += [engine, routes]

    @app.get("/items/{item_id}")
    async def item(item_id: int, a: str = "", b: str = ""):
        n = handler.hit("item")
        if handler.block:
            import asyncio

            await asyncio.to_thread(handler.release.wait, 10)
        handler.fail()
        if handler.mode == "503":
            return PlainTextResponse("down", status_code=503)
        return {"item": item_id, "n": n, "a": a, "b": b}

    @app.get("/short")
    async def short():
        n = handler.hit("short")
        return JSONResponse({"n": n}, headers={"Cache-Control": "max-age=5"})

    @app.get("/private")
    async def private():
        n = handler.hit("private")
        return JSONResponse({"n": n}, headers={"Cache-Control": "private, max-age=60"})

    @app.get("/lang")
    async def lang(request_lang: str = ""):
        return {"n": handler.hit("lang")}

    @app.post("/items/{item_id}")
    async def post_item(item_id: int):
        return {"posted": handler.hit("post")}

    @app.get("/route/{name}")
    @cache_route(routes, ttl=CacheTTL(fresh=10, stale=20, expired=30), vary=["accept"])
    async def route(name: str, q: int = 0):
        n = handler.hit("route")
        if handler.mode == "404":
            raise HTTPException(404, "nope")
        handler.fail()
        return {"name": name, "q": q, "n": n}

    @app.get("/sync-route")
    @cache_route(routes)
    def sync_route():
        return {"n": handler.hit("sync")}

    app.add_middleware(
        CacheMiddleware,
        engine=engine,
        vary=["accept-language"],
        paths=["/items", "/short", "/private", "/lang"],
        clock=clock,
    )
    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def handler() -> Handler:
    return Handler()


@pytest.fixture
def client(clock: FakeClock, handler: Handler) -> Iterator[httpx.Client]:
    with serve(make_app(clock, handler)) as base, httpx.Client(base_url=base) as http:
        yield http
    handler.release.set()


def test_get_is_cached_with_headers_on_the_way_out(client, handler, clock):
    first = client.get("/items/1")
    assert (first.json()["n"], first.headers["x-cache"]) == (1, "MISS")
    assert first.headers["cache-control"] == (
        "max-age=60, stale-while-revalidate=300, stale-if-error=3600"
    )
    assert first.headers["vary"] == "accept-language"
    clock.advance(7)
    second = client.get("/items/1")
    assert (second.json()["n"], second.headers["x-cache"], second.headers["age"]) == (
        1,
        "HIT",
        "7",
    )
    assert handler.calls["item"] == 1


def test_query_order_does_not_matter(client, handler):
    client.get("/items/1?b=2&a=1")
    same = client.get("/items/1?a=1&b=2")
    assert same.headers["x-cache"] == "HIT"
    assert client.get("/items/1?a=1").headers["x-cache"] == "MISS"
    assert handler.calls["item"] == 2


def test_request_no_cache_refreshes_and_no_store_bypasses(client, handler):
    client.get("/items/1")
    refreshed = client.get("/items/1", headers={"Cache-Control": "no-cache"})
    assert refreshed.json()["n"] == 2
    assert client.get("/items/1").json()["n"] == 2
    bypass = client.get("/items/1", headers={"Cache-Control": "no-store"})
    assert (bypass.json()["n"], "x-cache" in bypass.headers) == (3, False)
    assert client.get("/items/1").json()["n"] == 2


def test_middleware_honours_only_if_cached_max_stale_and_min_fresh(client, handler, clock):
    only = {"Cache-Control": "only-if-cached"}
    assert client.get("/items/1", headers=only).status_code == 504
    assert handler.calls.get("item", 0) == 0
    client.get("/items/1")  # fresh 60 s, stale 300 s
    clock.advance(50)
    hit = client.get("/items/1", headers=only)
    assert (hit.status_code, hit.headers["x-cache"], hit.json()["n"]) == (200, "HIT", 1)
    client.get("/items/1", headers={"Cache-Control": "min-fresh=20"})  # 10 s left: refetch
    assert handler.calls["item"] == 2
    clock.advance(70)  # stale by 10 s
    stale = client.get("/items/1", headers={"Cache-Control": "max-stale=20"})
    assert (stale.headers["x-cache"], stale.json()["n"]) == ("STALE", 2)
    assert client.get("/items/1", headers=only).headers["x-cache"] == "STALE"  # within swr
    assert handler.calls["item"] == 2  # neither started a refresh
    fresh = client.get("/items/1", headers={"Cache-Control": "max-age=30"})
    assert (fresh.headers["x-cache"], fresh.json()["n"]) == ("MISS", 3)


def test_stale_is_served_while_the_handler_refreshes_in_the_background(client, handler, clock):
    client.get("/items/1")
    handler.block = True
    clock.advance(61)
    started = time.monotonic()
    stale = client.get("/items/1")
    assert time.monotonic() - started < 5  # the handler is blocked; nobody waited
    assert (stale.json()["n"], stale.headers["x-cache"]) == (1, "STALE")
    wait_until(lambda: handler.calls["item"] == 2)
    handler.release.set()
    wait_until(lambda: client.get("/items/1").headers["x-cache"] == "HIT")
    assert client.get("/items/1").json()["n"] == 2


@pytest.mark.parametrize("mode", ["raise", "503"])
def test_failing_handler_serves_fallback_within_stale_if_error(client, handler, clock, mode):
    client.get("/items/1")
    handler.mode = mode
    clock.advance(400)  # past fresh and stale, inside stale-if-error
    fallback = client.get("/items/1")
    assert (fallback.status_code, fallback.json()["n"], fallback.headers["x-cache"]) == (
        200,
        1,
        "FALLBACK",
    )
    assert fallback.headers["age"] == "400"
    calls = handler.calls["item"]
    assert client.get("/items/1").headers["x-cache"] == "FALLBACK"
    assert handler.calls["item"] == calls  # the backoff holds the next call
    clock.advance(4000)  # past the whole lifetime: the failure reaches the client
    assert client.get("/items/1").status_code in (500, 503)


def test_vary_header_values_select_the_entry(client, handler):
    en = client.get("/lang", headers={"Accept-Language": "en"})
    fr = client.get("/lang", headers={"Accept-Language": "fr"})
    assert (en.json()["n"], fr.json()["n"]) == (1, 2)
    assert client.get("/lang", headers={"Accept-Language": "en"}).json()["n"] == 1
    assert client.get("/lang", headers={"Accept-Language": "fr"}).headers["x-cache"] == "HIT"


def test_the_handler_cache_control_sets_the_windows(client, handler, clock):
    first = client.get("/short")
    assert first.headers["cache-control"] == "max-age=5"
    clock.advance(6)
    assert client.get("/short").json()["n"] == 2


def test_private_responses_and_other_methods_pass_through(client, handler):
    client.get("/private")
    assert client.get("/private").json()["n"] == 2
    assert client.post("/items/1").json()["posted"] == 1
    assert client.post("/items/1").json()["posted"] == 2


def test_cache_route_caches_the_return_value(client, handler, clock):
    first = client.get("/route/a?q=1")
    assert first.json() == {"name": "a", "q": 1, "n": 1}
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == (
        "max-age=10, stale-while-revalidate=20, stale-if-error=30"
    )
    assert first.headers["vary"] == "accept"
    clock.advance(3)
    hit = client.get("/route/a?q=1")
    assert (hit.json()["n"], hit.headers["x-cache"], hit.headers["age"]) == (1, "HIT", "3")
    assert client.get("/route/a?q=2").json()["n"] == 2
    assert client.get("/route/a?q=1", headers={"Accept": "text/plain"}).json()["n"] == 3
    assert client.get("/route/a?q=1", headers={"Cache-Control": "no-cache"}).json()["n"] == 4


def test_cache_route_fallback_and_http_errors(client, handler, clock):
    client.get("/route/a")
    handler.mode = "raise"
    clock.advance(35)
    fallback = client.get("/route/a")
    assert (fallback.json()["n"], fallback.headers["x-cache"]) == (1, "FALLBACK")
    handler.mode = "404"
    assert client.get("/route/b").status_code == 404
    assert client.get("/route/b").status_code == 404
    assert handler.calls["route"] == 4  # not cached


def test_cache_route_sync_endpoint(client, handler):
    assert client.get("/sync-route").json() == {"n": 1}
    assert client.get("/sync-route").headers["x-cache"] == "HIT"


def test_settings_are_checked(clock):
    with StaleEngine(clock=clock) as sync_engine:
        with pytest.raises(TypeError, match="AsyncStaleEngine"):
            CacheMiddleware(FastAPI(), sync_engine)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="AsyncStaleEngine"):
            cache_route(sync_engine)  # type: ignore[arg-type]
    engine = AsyncStaleEngine(clock=clock)
    with pytest.raises(TypeError, match="vary"):
        CacheMiddleware(FastAPI(), engine, vary="accept")
    with pytest.raises(TypeError, match="paths"):
        CacheMiddleware(FastAPI(), engine, paths="/items")
    with pytest.raises(TypeError, match="ttl"):
        CacheMiddleware(FastAPI(), engine, ttl=60)  # type: ignore[arg-type]

    def takes_kwargs(**kw):
        return kw

    with pytest.raises(TypeError, match="kwargs"):
        cache_route(engine)(takes_kwargs)


def test_two_servers_share_one_lmdb_store(tmp_path, clock):
    from swr.storage import LMDBStorage

    calls = []

    def make(storage: LMDBStorage) -> FastAPI:
        engine = AsyncStaleEngine(storage, ttl=TTL, clock=clock, namespace="pages")

        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            yield
            await engine.aclose()

        app = FastAPI(lifespan=lifespan)

        @app.get("/page")
        async def page():
            calls.append(1)
            return {"n": len(calls)}

        app.add_middleware(CacheMiddleware, engine=engine, clock=clock)
        return app

    with (
        LMDBStorage(tmp_path / "db", clock=clock) as one,
        LMDBStorage(tmp_path / "db", clock=clock) as two,
    ):
        with serve(make(one)) as first, serve(make(two)) as second:
            a = httpx.get(first + "/page")
            b = httpx.get(second + "/page")
    assert (a.headers["x-cache"], b.headers["x-cache"]) == ("MISS", "HIT")
    assert a.json() == b.json() == {"n": 1}
