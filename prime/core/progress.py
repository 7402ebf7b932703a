"""Progress bars, drawn on a terminal only: output redirected to a log file or a pipe gets
no bars (tqdm's ``disable=None``), so background runs log their summaries and nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress_bar(iterable: Iterable[Any] | None = None, show: bool = True, **options: Any) -> Any:
    """A tqdm bar over ``iterable`` (or one updated by hand), drawn where ``show`` is true
    and stderr is a terminal; ``options`` go to tqdm (``total``, ``desc``, ``leave``, ...)."""
    return tqdm(iterable, disable=None if show else True, **options)
