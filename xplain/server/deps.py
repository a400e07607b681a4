"""What routes need from the running service, taken from the app state."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from xplain.llm import LLM
from xplain.server.jobs import JobManager
from xplain.server.registry import ModelRegistry
from xplain.server.store import Store
from xplain.settings import Settings


@dataclass
class Service:
    settings: Settings
    store: Store
    llm: LLM
    registry: ModelRegistry
    jobs: JobManager


def service(request: Request) -> Service:
    return request.app.state.service

