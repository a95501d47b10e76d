"""The README's interpreter table is checked against the registry: names, functions and sides."""

import re
from pathlib import Path

import pytest

import tl_embspace as te

README = Path(__file__).resolve().parents[1] / "README.md"
HEADER = "| registry name | function | vectors | side |"


def _table_rows() -> list[list[str]]:
    """The cells of every row of the README's interpreter table (header and rule excluded)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(HEADER) + 2  # skip the header and its |---| rule
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


ROWS = _table_rows()


def _names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def _sides(cell: str) -> list[str] | None:
    """Sides a cell names explicitly (``read ×3, write`` -> 3 reads, 1 write), else None."""
    sides: list[str] = []
    for part in cell.split(","):
        part = part.strip()
        if m := re.fullmatch(r"(read|write) ×(\d+)", part):
            sides += [m.group(1)] * int(m.group(2))
        elif m := re.fullmatch(r"(read|write) × (read|write)", part):
            sides.append(f"{m.group(1)}×{m.group(2)}")
        elif part in ("read", "write"):
            sides.append(part)
        else:
            return None  # free text ("by side", "you choose"): the option picks the side
    return sides


def test_the_table_lists_every_registered_interpreter_once():
    listed = [name for row in ROWS for name in _names(row[0])]
    assert sorted(listed) == sorted(te.interpreters), (
        "README interpreter table and registry differ: "
        f"missing {sorted(set(te.interpreters) - set(listed))}, "
        f"unknown {sorted(set(listed) - set(te.interpreters))}"
    )
    assert len(listed) == len(set(listed)), "a registry name is listed twice"


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row[0].replace("`", ""))
def test_each_row_names_the_public_functions_of_its_interpreters(row):
    names = _names(row[0])
    functions = [f.removeprefix("te.") for f in _names(row[1])]
    assert functions, f"row {row[0]} names no function"
    for function in functions:
        assert function in te.__all__, f"te.{function} is not exported"
    registered = [te.interpreters[name].function for name in names]
    assert [getattr(te, f) for f in functions] == registered[: len(functions)]
    if "..." not in row[1]:
        assert len(functions) == len(names)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row[0].replace("`", ""))
def test_each_row_states_the_sides_its_specs_declare(row):
    sides = _sides(row[3])
    names = _names(row[0])
    declared = [te.interpreters[name].side for name in names]
    if sides is None:
        # Free text ("by side", "you choose") only where an option picks the side.
        assert "per_call" in declared, f"{row[0]}: say the sides, {declared}"
    else:
        assert sides == declared
