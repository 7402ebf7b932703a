"""Run the Python examples of a docs page, in order and in one namespace, so they stay true.

Every fenced ``python`` block of the page runs as written; a line ``print(...)  # X``
(X up to a colon; no prints in loops) states the output, and the script fails where the
printed line does not start with it.

    python scripts/run_doc_examples.py docs/api.md
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import types
from pathlib import Path

BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
STATED = re.compile(r"^print\(.*\)\s+# (.+)$")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("page", type=Path)
    args = p.parse_args()
    module = types.ModuleType("__doc_examples__")  # a module: dataclasses look theirs up
    sys.modules[module.__name__] = module
    namespace = module.__dict__
    failures = 0
    for number, block in enumerate(BLOCK.findall(args.page.read_text()), start=1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, f"{args.page} block {number}", "exec"), namespace)
        printed = iter(out.getvalue().splitlines())
        for line in (line.strip() for line in block.splitlines()):
            if not line.startswith("print("):
                continue
            got = next(printed, "<nothing printed>")  # one line per print (none in loops)
            stated = STATED.match(line)
            if not stated:
                continue
            expected = stated.group(1).split(":")[0].strip()
            if not got.startswith(expected):
                print(f"block {number}: printed {got!r}, the page says {expected!r}")
                failures += 1
        print(f"block {number}: ran")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
