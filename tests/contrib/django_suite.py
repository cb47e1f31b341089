"""Django's own ``BaseCacheTests`` against swr's backends (run by ``runtests.py``).

``test_django_suite.py`` copies this module into the ``tests/cache`` package of the
Django sdist (as ``cache/test_swr_backends.py``) and runs it with Django's
``runtests.py``. It reads where the stores are from the environment:
``SWR_DJANGO_LMDB`` (a directory) and ``SWR_DJANGO_REDIS`` (a URL, or empty to skip).

The only caches left out are ``cull`` and ``zero_cull`` (``redis_excluded_caches``),
as Django does for its own Redis backend: their tests then skip themselves
("Culling isn't implemented.").
"""

import os
import unittest

from django.test import TestCase, override_settings

from .tests import BaseCacheTests, caches_setting_for_tests, redis_excluded_caches

LMDB_PARAMS = {
    "BACKEND": "swr.contrib.django.LMDBCache",
    "LOCATION": os.environ.get("SWR_DJANGO_LMDB", ""),
    "OPTIONS": {"max_bytes": 64 << 20, "sweep_interval": None},
}
REDIS_URL = os.environ.get("SWR_DJANGO_REDIS", "")
REDIS_PARAMS = {"BACKEND": "swr.contrib.django.RedisCache", "LOCATION": REDIS_URL}


@unittest.skipUnless(LMDB_PARAMS["LOCATION"], "SWR_DJANGO_LMDB is not set")
@override_settings(CACHES=caches_setting_for_tests(base=LMDB_PARAMS, exclude=redis_excluded_caches))
class SWRLMDBCacheTests(BaseCacheTests, TestCase):
    pass


@unittest.skipUnless(REDIS_URL, "SWR_DJANGO_REDIS is not set")
@override_settings(
    CACHES=caches_setting_for_tests(base=REDIS_PARAMS, exclude=redis_excluded_caches)
)
class SWRRedisCacheTests(BaseCacheTests, TestCase):
    pass
