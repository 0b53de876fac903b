"""Diagnostics: every outcome a stage reports is a value, never a print. The codes and their titles are declared by
the modules that report them and assembled in kflowgen.codes."""
from __future__ import annotations

from dataclasses import dataclass, field

ERROR = "error"
WARNING = "warning"

@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding. `path` is a repository-relative file, or an overlay and object identity for built manifests."""

    path: str
    line: int
    col: int
    code: str
    message: str
    severity: str = ERROR
    hint: str = ""

    def location(self) -> str:
        return f"{self.path}:{self.line}:{self.col}" if self.line else self.path


def error(path: str, pos: tuple[int, int], code: str, message: str, hint: str = "") -> Diagnostic:
    return Diagnostic(path, pos[0], pos[1], code, message, ERROR, hint)


def warning(path: str, pos: tuple[int, int], code: str, message: str, hint: str = "") -> Diagnostic:
    return Diagnostic(path, pos[0], pos[1], code, message, WARNING, hint)


@dataclass
class Report:
    """What a command found: diagnostics plus facts for the summary. Exit code 1 on any error."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    def extend(self, diags) -> None:
        self.diagnostics.extend(diags)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0

    def sorted(self) -> list[Diagnostic]:
        return sorted(set(self.diagnostics))
