import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py


@pytest.fixture(autouse=True, scope="session")
def _own_cache(tmp_path_factory):
    """The data checks remember datasets in XDG_CACHE_HOME: the tests' own, not the user's."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))
