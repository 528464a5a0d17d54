import os

import pytest
from hypothesis import settings

from mpimpy import tracking

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _few_threads():
    # tests run many small products: extra threads only add overhead on a 2-core machine
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    """One SQLite MLflow store per test module, its tables created once."""
    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    tracking.get_client(uri).search_experiments()
    return uri


@pytest.fixture
def store(store_uri, monkeypatch, tmp_path):
    """The test store in force (never the project's mlruns/), and a client on it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store_uri)
    monkeypatch.setenv("MPIMPY_STORE", str(tmp_path / "unused-store"))
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", tracking.ENV_RUN_MANAGED):
        monkeypatch.delenv(name, raising=False)
    return tracking.get_client(store_uri)
