"""A trusted import prefix trusts the operator's own code, not everything that code imports.

The operator trusts a module that, like most real ones, imports `os` and `subprocess`. Every path that walks from
it into another module, a builtin or a dunder is refused with 403 before anything runs: no marker file appears, no
registration is stored, and the model list is unchanged. The module's own function and fitted model still load.
"""

from __future__ import annotations

import sys
import textwrap
import uuid

import httpx
import pytest

from xplain.llm import LLM
from xplain.llm.backends.fake import FakeBackend
from xplain.server.app import create_app
from xplain.settings import Settings
from xplain.testing.serve import serve_in_thread

pytestmark = pytest.mark.integration

KEY = "operator-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def trusted_module(tmp_path, monkeypatch):
    """A fresh package under its own name (nothing cached in sys.modules), whose code imports os and subprocess."""
    name = f"opmods_{uuid.uuid4().hex[:8]}"
    package = tmp_path / "code" / name
    package.mkdir(parents=True)
    marker = tmp_path / "marker"
    (package / "__init__.py").write_text(
        textwrap.dedent(
            f"""
            import functools
            import os
            import subprocess
            from os import system
            from subprocess import Popen, run

            from sklearn.linear_model import LogisticRegression

            MARKER = {str(marker)!r}
            model = LogisticRegression().fit([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2]], [0, 1, 0, 1])
            length_partial = functools.partial(len)


            def text_length(texts):
                return [float(len(text)) for text in texts]


            class Scorer:
                @staticmethod
                def score(texts):
                    return [1.0 for _ in texts]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    yield name, marker
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]


ESCAPES = [
    "{m}:subprocess.run",
    "{m}:os.system",
    "{m}:os",
    "{m}:run",
    "{m}:system",
    "{m}:Popen",
    "{m}:length_partial",
    "{m}:__builtins__",
    "{m}:text_length.__globals__",
    "{m}:Scorer.__init__.__globals__",
    "{m}:MARKER",
]


def test_paths_out_of_a_trusted_module_are_refused_and_change_nothing(tmp_path, trusted_module):
    name, marker = trusted_module
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        api_keys=[KEY],
        trusted_import_prefixes=[name],
    )
    app = create_app(settings, llm=LLM(FakeBackend(default="ok")), register_demo_models=True)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as api:
        before = api.get("/models").json()
        for number, escape in enumerate(ESCAPES):
            path = escape.format(m=name)
            body = {"name": f"escape{number}", "kind": "module", "source": {"import_path": path}}
            response = api.post("/models", json=body)
            assert response.status_code == 403, (path, response.status_code, response.text)
            assert "refused" in response.json()["error"], response.text
            assert api.post(f"/models/escape{number}/predict", json={"inputs": ["touch " + str(marker)]}).status_code == 404
        assert api.get("/models").json() == before
        assert not marker.exists()

        # what the operator meant to trust still works: their own function, a static method of their own class,
        # and a fitted model bound in their module
        own = {"name": "length", "kind": "module", "source": {"import_path": f"{name}:text_length"}}
        assert api.post("/models", json=own).status_code == 201
        outputs = api.post("/models/length/predict", json={"inputs": ["abcd"]}).json()
        assert outputs["predictions"][0]["output"] == 4.0
        nested = {"name": "scorer", "kind": "module", "source": {"import_path": f"{name}:Scorer.score"}}
        assert api.post("/models", json=nested).status_code == 201
        fitted = {"name": "fitted", "source": {"import_path": f"{name}:model"}}
        assert api.post("/models", json=fitted).status_code == 201
    assert not marker.exists()


def test_the_operator_may_allow_one_foreign_object_exactly(tmp_path, trusted_module):
    name, _ = trusted_module
    settings = Settings(
        llm_backend="fake",
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        trusted_import_prefixes=[name],
        trusted_import_objects=[f"{name}:length_partial"],
    )
    with serve_in_thread(create_app(settings, llm=LLM(FakeBackend(default="ok")))) as url:
        allowed = {"name": "listed", "kind": "module", "source": {"import_path": f"{name}:length_partial"}}
        assert httpx.post(f"{url}/models", json=allowed, timeout=30).status_code == 201
        other = {"name": "unlisted", "kind": "module", "source": {"import_path": f"{name}:os.system"}}
        assert httpx.post(f"{url}/models", json=other, timeout=30).status_code == 403


def test_a_stored_escape_does_not_load_on_restart(tmp_path, trusted_module):
    """A registration stored before this check (the issue's attack persisted across restarts) is skipped."""
    import asyncio

    from xplain.server.store import Store

    name, marker = trusted_module
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    settings = Settings(llm_backend="fake", database_url=database_url, trusted_import_prefixes=[name])
    store = Store(database_url)
    spec = {"name": "old", "kind": "module", "source": {"import_path": f"{name}:os.system"}}
    asyncio.run(store.save_model("old", spec))
    store.close()
    with serve_in_thread(create_app(settings, llm=LLM(FakeBackend(default="ok")))) as url:
        assert httpx.get(f"{url}/models/old", timeout=30).status_code == 404
        refused = httpx.post(f"{url}/models/old/predict", json={"inputs": ["touch " + str(marker)]}, timeout=30)
        assert refused.status_code == 404
    assert not marker.exists()
