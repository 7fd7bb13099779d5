"""A real Hugging Face Hub-compatible server on 127.0.0.1 for tests: olah serving local git repos.

Not a test module (pytest does not collect it: no ``test_`` prefix). Typical use::

    shas = make_git_repo(mirrors / "models" / "org" / "name", [{"config.json": b"{}"}])
    with OlahServer(mirrors, workdir) as hub:
        hf_hub_download("org/name", "config.json", revision=shas[0], endpoint=hub.endpoint)
        assert hub.request_count() == 2  # HEAD + GET

What olah needs, learnt from its source (olah 0.5.x) and checked against huggingface_hub 2.x:

* A repo is a plain, non-bare git repo at ``<mirrors_root>/models/<org>/<name>``. olah opens it
  per request, so repos and commits added after start-up are served without a restart.
* Plain git blobs are served as they are (no git LFS needed; a 1.5 MB binary file is fine).
  olah sniffs every blob of 121-149 bytes for an LFS pointer by decoding it as UTF-8, so a
  *binary* file of exactly that size makes it answer 500: keep binary files out of that range.
  README.md must be UTF-8 (olah parses its YAML front matter for every ``model_info``).
* Revisions: ``/api/models/<org>/<name>/revision/<rev>`` resolves a branch, a tag or a sha.
  ``/api/models/<org>/<name>`` without a revision does *not* work for local mirrors in offline
  mode (olah looks in its own cache): always pass a revision.
* Errors: a missing repo, branch or tag is answered 401 ``RepoNotFound`` (huggingface_hub raises
  RepositoryNotFoundError), and so is a missing file asked for by branch or tag; a missing file
  asked for by commit sha is 404 ``EntryNotFound`` (RemoteEntryNotFoundError). An unknown 40-hex
  sha is a 500 (olah raises) on the API and file routes, after which uvicorn drops the
  keep-alive connection: the client's next request on it fails with "connection reset" unless
  the client drops its pooled connections (``huggingface_hub.close_session()``). On a file
  route huggingface_hub retries 500s and refused connections with back-off (about 25 s).
* Offline mode (``[accessibility] offline = true``) never calls the upstream; the upstream is
  moreover pointed at 127.0.0.1:9 (discard port, nothing listens) and proxy variables are
  removed from olah's environment, so nothing can reach beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath
from types import TracebackType

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "rsrouter tests",
    "GIT_AUTHOR_EMAIL": "tests@rsrouter.invalid",
    "GIT_COMMITTER_NAME": "rsrouter tests",
    "GIT_COMMITTER_EMAIL": "tests@rsrouter.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
}
_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: fixed dates give reproducible shas

# uvicorn's access log line, e.g. `127.0.0.1:43080 - "HEAD /org/x/resolve/main/a HTTP/1.1" 200 OK`
_ACCESS_LINE = re.compile(
    r'"(?P<method>GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (?P<path>\S+) HTTP/[\d.]+"'
    r" (?P<status>\d{3})"
)


def _git(repo: Path, *args: str, date: int | None = None) -> str:
    env = {**os.environ, **_GIT_ENV}
    if date is not None:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"@{date} +0000"
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false",
         "-c", "core.autocrlf=false", *args],
        cwd=repo, env=env, capture_output=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {repo}: {done.stderr.decode().strip()}")
    return done.stdout.decode().strip()


def _clear_worktree(path: Path) -> None:
    for child in path.iterdir():
        if child.name == ".git":
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def make_git_repo(
    path: Path, commits: list[dict[str, bytes]], tags: dict[str, int] | None = None
) -> list[str]:
    """Create a git repo at ``path`` on branch ``main`` with one commit per dict.

    Each dict maps a relative POSIX path to the file's bytes, and is the *whole* tree of its
    commit (files of the previous commit that it does not list are deleted). ``tags`` maps a
    tag name to a commit index (lightweight tags). Author, committer and dates are fixed, so
    the same input gives the same shas, with no git config needed.

    Returns the commit shas (40 hex), in order. Raises ValueError for an unsafe file path and
    RuntimeError if git fails.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise ValueError(f"{path} exists and is not empty")
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q")
    _git(path, "symbolic-ref", "HEAD", "refs/heads/main")  # `init -b` needs git >= 2.28
    shas: list[str] = []
    for index, files in enumerate(commits):
        _clear_worktree(path)
        for name, data in files.items():
            rel = PurePosixPath(name)
            if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.parts[0] == ".git":
                raise ValueError(f"unsafe file path in commit {index}: {name!r}")
            target = path.joinpath(*rel.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _git(path, "add", "--all", "--force", ".")
        _git(path, "commit", "-q", "--allow-empty", "--no-verify", "-m", f"commit {index}",
             date=_EPOCH + 60 * index)
        shas.append(_git(path, "rev-parse", "HEAD"))
    for name, index in (tags or {}).items():
        _git(path, "tag", name, shas[index])
    return shas


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _olah_cli() -> str:
    beside = Path(sys.executable).with_name("olah-cli")
    found = str(beside) if beside.exists() else shutil.which("olah-cli")
    if found is None:
        raise RuntimeError("olah-cli not found: install the test extra (pip install olah)")
    return found


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class OlahServer:
    """olah on 127.0.0.1 (free port, offline mode) serving the git repos under ``mirrors_root``.

    Starts on construction and waits until the port accepts connections (``startup_timeout``
    seconds; RuntimeError with the log tail otherwise). Use it as a context manager or call
    ``stop()``. ``workdir`` receives ``olah.toml``, olah's cache (``repos/``), its log folder
    (``logs/``) and the captured stdout/stderr (``olah.out``), which is what ``requests()``
    and ``request_count()`` read. olah runs under ``timeout`` (``max_lifetime_s``) so that it
    cannot outlive a crashed test run by long.

    Attributes: ``endpoint`` ("http://127.0.0.1:PORT"), ``port``, ``pid`` (of the ``timeout``
    wrapper, which forwards signals to olah), ``log_path``.
    """

    def __init__(
        self,
        mirrors_root: Path,
        workdir: Path,
        *,
        startup_timeout: float = 30.0,
        max_lifetime_s: int = 900,
    ) -> None:
        self.mirrors_root = Path(mirrors_root).resolve()
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.mirrors_root / "models").mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "olah.out"
        self._proc: subprocess.Popen[bytes] | None = None
        last_error: RuntimeError | None = None
        for _ in range(3):  # a port taken between _free_port() and olah's bind: try another
            try:
                self._start(startup_timeout, max_lifetime_s)
                return
            except RuntimeError as error:
                last_error = error
                if "address already in use" not in str(error).lower():
                    raise
        assert last_error is not None
        raise last_error

    def _start(self, startup_timeout: float, max_lifetime_s: int) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        config = self.workdir / "olah.toml"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f"repos-path = {_toml_str(str(self.workdir / 'repos'))}\n"
            f"mirrors-path = [{_toml_str(str(self.mirrors_root))}]\n"
            'hf-scheme = "http"\n'
            'hf-netloc = "127.0.0.1:9"\n'
            'hf-lfs-netloc = "127.0.0.1:9"\n'
            "\n[accessibility]\n"
            "offline = true\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [_olah_cli(), "-c", str(config), "--log-path", str(self.workdir / "logs")]
        if shutil.which("timeout"):
            cmd = ["timeout", "--kill-after=5", str(max_lifetime_s), *cmd]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._proc = None
                raise RuntimeError(
                    f"olah exited at start-up (code {code}); log tail:\n{self.log_tail()}"
                )
            try:  # a bare TCP connect: no HTTP request, so nothing in the access log
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"olah did not answer on {self.endpoint} within {startup_timeout:.0f} s; "
            f"log tail:\n{self.log_tail()}"
        )

    def __enter__(self) -> OlahServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate olah by its PID (SIGTERM, then SIGKILL to its own process group)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the session start_new_session created
            except ProcessLookupError:
                pass
            proc.wait(timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of olah's captured stdout/stderr."""
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def requests(self) -> list[tuple[str, str, int]]:
        """Every request the server answered so far, as (method, path, status), in order.

        Read from uvicorn's access log, which uvicorn writes when it starts a response, i.e.
        before the client sees it.
        """
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [(m["method"], m["path"], int(m["status"])) for m in _ACCESS_LINE.finditer(text)]

    def request_count(self) -> int:
        """How many requests the server answered so far (see ``requests()``)."""
        return len(self.requests())
