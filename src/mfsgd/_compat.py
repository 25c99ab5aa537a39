"""Lazy imports of optional dependencies, each failing with the extra to install."""

from __future__ import annotations

from typing import Any


def require_pandas(feature: str) -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(f"{feature} needs pandas: pip install 'mfsgd[pandas]'") from None
    return pandas


def optional_tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm
