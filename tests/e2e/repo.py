"""The repository Argo CD syncs, as a local git repository reached through a `file://` URL, and the JupyterHub chart
served from a Helm repository on loopback.

The copy is the example repository (specs, bases, overlays) with only what points outside this machine changed in
`specs/platform.yaml`, as a platform team would set it for its own clusters: `repo.url` (this folder),
`environments.<env>.cluster` (each environment's local API server) and `jupyterhub.chartRepo` (the local Helm
repository); then `kflowgen render` writes overlays/ again and the result is committed on branch `main`.
`url_changes()` lists those substitutions, so a test can show the overlays differ from the committed ones by them
only."""
from __future__ import annotations

import functools
import os
import http.server
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import yaml

GIT_ENV = {"GIT_AUTHOR_NAME": "kflowgen e2e", "GIT_AUTHOR_EMAIL": "e2e@kflowgen.invalid",
           "GIT_COMMITTER_NAME": "kflowgen e2e", "GIT_COMMITTER_EMAIL": "e2e@kflowgen.invalid",
           "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}


def kflowgen(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The kflowgen command of this checkout, as a user runs it."""
    out = subprocess.run([sys.executable, "-m", "kflowgen", *args], cwd=cwd, capture_output=True, text=True,
                         timeout=600)
    if check and out.returncode:
        raise RuntimeError(f"kflowgen {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out


@dataclass
class LocalRepo:
    path: Path
    changes: dict[str, str] = field(default_factory=dict)  # original value -> local value, in the platform spec

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def git(self, *args: str) -> str:
        out = subprocess.run(["git", *args], cwd=self.path, capture_output=True, text=True, timeout=120,
                             env={**os.environ, **GIT_ENV})
        if out.returncode:
            raise RuntimeError(f"git {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout

    def commit(self, message: str, render: bool = True) -> str:
        """Render (overlays/ from the specs, as the README's workflow does) and commit everything; the new revision.
        `render=False` commits the working tree as it is: a change that went around kflowgen and its gate."""
        if render:
            kflowgen("render", "-C", str(self.path), cwd=self.path)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def built(self, env: str) -> list[dict]:
        """`kflowgen build ENV` of the copy: every object Argo CD applies to the environment."""
        out = kflowgen("build", env, "-C", str(self.path), cwd=self.path)
        return [d for d in yaml.safe_load_all(out.stdout) if isinstance(d, dict)]


def make(src: Path, dest: Path, clusters: dict[str, str], chart_repo: str | None = None) -> LocalRepo:
    """Copy src's specs, bases and overlays to dest, point the platform spec at the local stack, render, commit."""
    dest.mkdir(parents=True)
    for name in ("specs", "bases", "overlays"):
        if (src / name).is_dir():
            shutil.copytree(src / name, dest / name, symlinks=True)
    repo = LocalRepo(dest)
    spec_file = dest / "specs" / "platform.yaml"
    text = spec_file.read_text()
    platform = yaml.safe_load(text)
    wanted = {platform["repo"]["url"]: repo.url}
    for env, url in clusters.items():
        wanted[platform["environments"][env]["cluster"]] = url
    for old, new in wanted.items():
        if text.count(old) != 1:
            raise RuntimeError(f"{spec_file}: expected {old!r} exactly once, to point it at the local stack")
        text = text.replace(old, new)
    if chart_repo:
        hub = platform.get("jupyterhub") or {}
        if "chartRepo" in hub:
            text = text.replace(hub["chartRepo"], chart_repo)
        else:
            text = text.replace("\njupyterhub:\n", f"\njupyterhub:\n  chartRepo: {chart_repo}\n", 1)
        wanted["https://hub.jupyter.org/helm-chart/" if "chartRepo" not in hub else hub["chartRepo"]] = chart_repo
    spec_file.write_text(text)
    assert yaml.safe_load(text)["repo"]["url"] == repo.url
    repo.changes = wanted
    repo.git("init", "-q", "-b", "main")
    repo.commit("kflowgen e2e: the example repository, pointed at the local stack")
    return repo


class HelmRepo:
    """A Helm chart repository on loopback (index.yaml and the packaged chart), served from a thread here."""

    def __init__(self, chart_dir: Path, folder: Path, helm: Path):
        self.folder = folder
        folder.mkdir(parents=True)
        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        for args in (["package", str(chart_dir), "-d", str(folder)], ["repo", "index", str(folder), "--url", self.url]):
            out = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120,
                                 env={"PATH": "/usr/bin:/bin", "HOME": str(folder.parent)})
            if out.returncode:
                raise RuntimeError(f"helm {' '.join(args)} failed:\n{out.stderr}")
        self.thread = threading.Thread(target=self.server.serve_forever, name="helm-repo", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass
