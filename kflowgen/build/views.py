"""What a build holds of its overlays' texts and of the plain directories' files, as the checks read them: each
read when asked for, from the cache or the rendered files."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable


class Texts(Mapping):
    """{overlay: its built YAML}, where an overlay the cache built before is read from the cache only when its text
    is asked for: its sha256 and object count come from the build index (an unchanged team's overlays are never
    read by a gate whose schema, policy and diff checks find them passed and unchanged by that sha256)."""

    def __init__(self, order: list[str], texts: dict[str, str], load: Callable[..., str | bytes]):
        self._order, self._texts, self._load = order, texts, load  # load(overlay, raw=False): its text (raw: bytes)
        self._all = set(order)

    def __getitem__(self, overlay: str) -> str:
        if overlay not in self._texts:
            if overlay not in self._all:
                raise KeyError(overlay)
            self._texts[overlay] = self._load(overlay)
        return self._texts[overlay]

    def __contains__(self, overlay) -> bool:
        return overlay in self._all

    def data(self, overlay: str) -> bytes:
        """The overlay's text as UTF-8 bytes, for one use: not kept when it was not already, and a plain directory's
        never decoded (the side a validate keeps for later diffs writes each Argo CD folder's text to the cache, 34 MB
        at 10,000 teams: held, and as a text and its bytes, it was three copies at that stage's peak)."""
        if overlay in self._texts:
            return self._texts[overlay].encode("utf-8")
        if overlay not in self._all:
            raise KeyError(overlay)
        return self._load(overlay, raw=True)

    def __iter__(self):
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)


class Parts(Mapping):
    """{plain directory: [(path, text)] of its files}, decoded from the rendered files each time asked for (not held:
    at 1,000 teams the texts of every plain directory's files are 33 MiB, held to the end of a validate before)."""

    def __init__(self, files: Mapping[str, bytes], listing: dict[str, list[str]]):
        self._files, self._listing = files, listing

    def __getitem__(self, folder: str) -> list[tuple[str, str]]:
        return [(rel, self._files[rel].decode("utf-8")) for rel in self._listing[folder]]

    def __iter__(self):
        return iter(self._listing)

    def __len__(self) -> int:
        return len(self._listing)

    def __contains__(self, folder) -> bool:
        return folder in self._listing

    def text(self, folder: str) -> str:
        """The folder's files as one YAML stream, as Argo CD reads them."""
        return "---\n".join(t for _, t in self[folder])

    def data(self, folder: str) -> bytes:
        """text(folder) as UTF-8 bytes, none of the files decoded."""
        return b"---\n".join([self._files[rel] for rel in self._listing[folder]])

    def file(self, rel: str) -> bytes:
        """One of the folders' files, as rendered."""
        return self._files[rel]

    def paths(self, folder: str) -> list[str]:
        """The folder's files' paths, in order, none of them read."""
        return self._listing[folder]
