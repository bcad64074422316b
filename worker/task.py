"""The task as a handler sees it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass
class Task:
    """One try of one task. `deadline` is when this try's lease ends: the child is killed then."""

    id: str
    type: str
    queue: str
    payload: Any
    tries: int  # tries used, this one included (1 on the first try)
    max_tries: int  # -1: unlimited
    deadline: datetime
    log: logging.LoggerAdapter[logging.Logger] = field(repr=False)

    @property
    def last_try(self) -> bool:
        return self.max_tries != -1 and self.tries >= self.max_tries
