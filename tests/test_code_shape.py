"""The package stays readable: no function in spot/ a reader cannot hold at once (over 60 lines, docstring
included)."""
import ast
from pathlib import Path

LIMIT = 60
SPOT = Path(__file__).resolve().parents[1] / "spot"


def test_no_function_over_sixty_lines():
    long = []
    for path in sorted(SPOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LIMIT:
                    long.append(f"{path.relative_to(SPOT.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert len(list(SPOT.rglob("*.py"))) > 50
    assert not long, "split these into functions a reader can hold: " + "; ".join(long)
