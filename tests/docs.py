"""The examples in docs/receiving.md, as the tests run them: each code block follows a
marker ``<!-- example: NAME -->``, each event's example body a marker ``<!-- payload: TYPE -->``."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[1]
RECEIVING = ROOT / "docs" / "receiving.md"
_BLOCK = r"<!-- {kind}: ([\w.-]+) -->\n```(\w+)\n(.*?)```"


def _blocks(kind: str) -> dict[str, tuple[str, str]]:
    found = re.findall(_BLOCK.format(kind=kind), RECEIVING.read_text(), flags=re.S)
    return {name: (language, code) for name, language, code in found}


def examples() -> dict[str, tuple[str, str]]:
    """Every code example: name -> (language, code)."""
    return _blocks("example")


def example(name: str) -> str:
    return examples()[name][1]


def payloads() -> dict[str, Any]:
    """Every event type's example body: type -> the parsed JSON."""
    return {name: json.loads(code) for name, (_language, code) in _blocks("payload").items()}


# Appended to an example: reads cases from stdin (the body in base64, the headers, the
# secret, and the time it is "now", if not the real one) and prints, for each, what
# `call` returned (true or false) or the error it raised.
_PYTHON_HARNESS = """
import base64 as _b64, contextlib as _ctx, json as _json, sys as _sys
import time_machine as _tm
_results = []
for _case in _json.load(_sys.stdin):
    body, headers, secret = _b64.b64decode(_case["body"]), _case["headers"], _case["secret"]
    with _tm.travel(_case["now"], tick=False) if _case.get("now") else _ctx.nullcontext():
        try:
            _results.append(bool({call}))
        except Exception as _exc:
            _results.append(f"error: {{_exc!r}}")
print(_json.dumps(_results))
"""

_NODE_HARNESS = """
import {{ readFileSync as _read }} from "fs";
const _realNow = Date.now;
const _results = JSON.parse(_read(0, "utf8")).map((_case) => {{
  Date.now = _case.now ? () => _case.now * 1000 : _realNow;
  const body = Buffer.from(_case.body, "base64"), headers = _case.headers, secret = _case.secret;
  try {{
    return Boolean({call});
  }} catch (_error) {{
    return `error: ${{_error}}`;
  }}
}});
console.log(JSON.stringify(_results));
"""


def run(names: list[str], call: str, cases: list[dict[str, Any]], tmp_path: Path) -> list[bool | str]:
    """Run the examples `names` (one program, in this order) on each case; `call` is an
    expression of `body`, `headers` and `secret` in the examples' language."""
    languages = {examples()[name][0] for name in names}
    assert len(languages) == 1, names
    code = "\n".join(example(name) for name in names)
    if languages == {"python"}:
        command = [sys.executable, "-c", code + _PYTHON_HARNESS.format(call=call)]
    else:
        node = shutil.which("node")
        if node is None:
            skip_or_fail("Node.js runs the JavaScript examples of docs/receiving.md (apt-get install nodejs)")
        script = tmp_path / f"{'-'.join(names)}.mjs"
        script.write_text(code + _NODE_HARNESS.format(call=call))
        command = [node, str(script)]
    out = subprocess.run(command, input=json.dumps(cases), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)
