"""The optional C extensions of swr; everything else is configured in pyproject.toml.

``swr._speedups`` runs the engine's common answers; ``swr.storage._speedups`` decodes the
common record of the byte storages and runs ``PoolCache.get``'s hit and miss. Both are
optional: where they do not build (no C compiler), or with ``SWR_PURE_PYTHON=1`` set at
build time, swr installs and runs as pure Python, with the same behaviour.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("SWR_PURE_PYTHON", "") in ("", "0"):
    ext_modules += [
        Extension("swr._speedups", ["swr/_speedups.c"], depends=["swr/_slots.h"], optional=True),
        Extension(
            "swr.storage._speedups",
            ["swr/storage/_speedups.c"],
            depends=["swr/_slots.h"],
            optional=True,
        ),
    ]

setup(ext_modules=ext_modules)
