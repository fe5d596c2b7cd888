"""Progress bars on stderr: live on a terminal, a line every few seconds in a CI log."""

import sys
from typing import Any

from tqdm import tqdm


def bar(*, total: int, desc: str, unit: str) -> tqdm:
    kwargs: dict[str, Any] = {"mininterval": 0.5} if sys.stderr.isatty() else {"mininterval": 10, "ascii": True}
    # miniters=1: updates come at our own pace (polls), each may refresh the bar.
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr, miniters=1, **kwargs)
