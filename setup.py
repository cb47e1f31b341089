"""The optional C extension of swr; everything else is configured in pyproject.toml.

``swr.storage._speedups`` decodes the common record of the byte storages. It is
optional: where it does not build (no C compiler), or with ``SWR_PURE_PYTHON=1`` set at
build time, swr installs and runs as pure Python, with the same behaviour.
"""

import os

from setuptools import Extension, setup

ext_modules = []
if os.environ.get("SWR_PURE_PYTHON", "") in ("", "0"):
    ext_modules.append(
        Extension("swr.storage._speedups", ["swr/storage/_speedups.c"], optional=True)
    )

setup(ext_modules=ext_modules)
