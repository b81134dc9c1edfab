"""`mint-iqa`: one command tree over the library. Each command parses options, calls one library
function and reports; DVC stages (`python -m mint_iqa <step>`) and Prefect tasks call the same functions.

Exit codes: 0 success; 1 the step ran and found a problem (failed validation, failed items);
2 bad usage or input.
"""

from mint_iqa.cli import pipeline, use  # noqa: F401 - importing them registers their commands on `app`
from mint_iqa.cli.common import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    main()
