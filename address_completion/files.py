"""File safety for every command's outputs: refuse to overwrite, one run per output, atomic publication.

- ``check_writable`` / ``check_output_file`` / ``check_output_folder`` / ``check_model_folder``: the outputs are
  checked before any work (an existing result is replaced only with ``--force``); ``check_apart``: no output is
  also an input.
- ``output_lock(path, flag)``: one run per output (an flock beside it, held for the whole run).
- ``atomic_write`` / ``atomic_write_text`` / ``atomic_files`` / ``atomic_folder`` / ``staged_file``: written
  beside the target and renamed into place, so a reader never sees half a file; stale siblings of a killed run
  are cleaned; the process umask applies to what is published.
- A full disk is :class:`DiskFullError`: one line naming the output (``disk_full(exc)`` decides).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence

from .errors import AddressCompletionError, ConfigError, OutputExistsError
from .runtime import logger



def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Refuse to replace an existing file or non-empty folder unless ``force``."""
    path = Path(path)
    if path.exists() and not force:
        if path.is_dir() and not any(path.iterdir()):
            return path
        raise OutputExistsError(path)
    return path


def can_create_in(folder: str | os.PathLike) -> bool:
    """Whether a file can really be created in the existing ``folder``. os.access alone says yes to root on
    read-only and pseudo file systems (/proc, /sys, a read-only mount), where the final write then fails; a
    temporary file, removed at once, is the real test."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, force: bool, flag: str = "--output",
                      example: str = "predictions.jsonl") -> Path:
    """A path a result file may be written to: not a folder, in a folder that can exist, new unless ``force``.
    ``example`` is the file name the error for a folder suggests inside it."""
    if not str(path).strip():  # Path("") is "." and would be reported as the current folder
        raise ConfigError(f"{flag} is empty; name a file to write (e.g. {example})")
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a folder; name a file to write (e.g. {path / example})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, so no file can be written below it")
            if not can_create_in(parent):
                raise ConfigError(f"{flag} {path}: the folder {parent} is not writable")
            break
    return check_writable(path, force)


def check_output_folder(path: str | os.PathLike, flag: str = "--output") -> Path:
    """A path a folder of results can be made at (or written into): not a file, with no file among its parents,
    the folder itself (when it exists) or its nearest existing parent writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file; it must name a folder")
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, so no folder can be made below it")
            if not can_create_in(parent):  # else the work is done and the final rename fails
                raise ConfigError(f"{flag} {path}: the folder {parent} is not writable")
            break
    return path


def check_apart(outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
    """ConfigError when an output path is, contains or lies inside an input path (flag -> path; None entries and
    inputs that are not on disk, like hub names, are skipped). Checked before any work, with --force or not:
    writing there would destroy what the user had."""
    for out_flag, output in outputs.items():
        if output is None:
            continue
        out_path = Path(output).expanduser().resolve()
        for in_flag, given in inputs.items():
            if given is None or not Path(given).expanduser().exists():
                continue
            in_path = Path(given).expanduser().resolve()
            if out_path == in_path:
                relation = "is the same path as"
            elif in_path in out_path.parents:
                relation = "lies inside"
            elif out_path in in_path.parents:
                relation = "contains"
            else:
                continue
            raise ConfigError(f"{out_flag} {output} {relation} {in_flag} {given}: writing there would destroy an "
                              "input, with --force or not. Choose an output outside every input")


def check_model_folder(path: str | os.PathLike, force: bool, flag: str = "--output") -> Path:
    """A folder a model may be written to: new or empty, or (with ``force``) an earlier model folder.

    ``force`` never replaces a file or a non-empty folder without ``config.json``: a mistyped path must
    not delete someone's data.
    """
    if Path(path).name in ("", ".."):  # the folder is replaced as a whole, next to itself: it needs a name
        raise ConfigError(f"{flag} {str(path)!r} names no folder of its own (empty, . or ..); give the model "
                          "folder's path, e.g. outputs/my-model")
    check_output_folder(path, flag)  # first: a file there is wrong with --force too, so do not suggest --force
    path = check_writable(path, force)
    if path.is_dir() and any(path.iterdir()) and not (path / "config.json").is_file():
        raise ConfigError(f"{flag} {path} is not empty and holds no config.json; refusing to replace it even "
                          "with --force. Choose a new folder")
    return path


LOCK_SUFFIX = ".lock"


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it (beside, not inside: a folder published by rename
    would take a lock inside with it)."""
    path = Path(path).expanduser().absolute()
    return path.with_name(f".{path.name}{LOCK_SUFFIX}")


def _lock_holder(lock: Path) -> str:
    """"pid N: the command line" of the process whose id the lock file holds (best effort)."""
    try:
        pid = int(lock.read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        return "a process that has not written its id yet"
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        command = " ".join(arguments.decode("utf-8", "replace").split())
    except OSError:
        command = ""
    if len(command) > 200:  # one line: a `python -c SCRIPT` holder would fill the screen
        command = command[:199] + "…"
    return f"pid {pid}" + (f": {command}" if command else "")


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, flag: str = "--output") -> Iterator[Path]:
    """Hold an exclusive advisory lock on the output ``path`` for the body (the whole run of a command that
    writes it); yields the lock file.

    The lock is flock(2) on :func:`lock_path`: the kernel drops it when the process ends, however it ends, so a
    killed run never blocks the next one. A second process asking for the same output gets ConfigError at once,
    naming the output and the process holding it. The lock file is removed on release (and so are the parent
    folders this call had to create), so a refused command leaves nothing behind. When the folder the lock
    would go in cannot be made (a file among the parents, no write permission), nothing is locked: the
    command's own checks name that problem.
    """
    import fcntl

    if not str(path).strip():  # an empty path names no output; the command's checks say so
        yield lock_path(".")
        return
    lock = lock_path(path)
    created = [parent for parent in (lock.parent, *lock.parent.parents) if not parent.exists()]
    try:
        descriptor = _take_lock(lock, fcntl, f"{flag} {path}")
    except ConfigError:
        _remove_created(created)
        raise
    except OSError:  # the output's folder cannot be made or written: the command's checks say so
        descriptor = None
    try:
        if descriptor is not None:
            with contextlib.suppress(OSError):  # the id only makes the refusal more helpful (a full disk: none)
                os.ftruncate(descriptor, 0)
                os.write(descriptor, f"{os.getpid()}\n".encode("ascii"))
        yield lock
    except Exception as exc:
        if disk_full(exc):  # every writer of this output: one line instead of an OSError / SafetensorError traceback
            raise DiskFullError(f"{flag} {path}", exc) from None
        raise
    finally:
        if descriptor is not None:
            with contextlib.suppress(OSError):
                os.unlink(lock)  # while still locked: whoever opened the old file sees it is gone and retries
            os.close(descriptor)
        _remove_created(created)


def disk_full(exc: BaseException) -> bool:
    """True for an error that says the device is full (ENOSPC / EDQUOT), whatever library raised it (Python's
    OSError, safetensors' SafetensorError, Paddle's errors carry the C library's message)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class DiskFullError(AddressCompletionError):
    """The device holding an output filled up while it was written."""

    def __init__(self, what: str, exc: BaseException):
        path = Path(what.split(" ", 1)[-1]).expanduser().absolute()
        folder = next((parent for parent in (path, *path.parents) if parent.is_dir()), Path("/"))
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free on it now"
        except OSError:
            free = "its free space is unknown"
        culprit = getattr(exc, "filename", None)
        writing = f" while writing {culprit}" if culprit else ""
        super().__init__(f"{what}: no space left on the device{writing} ({free}); the partial output was removed. "
                         "Free some space or choose an output on another device")


def _take_lock(lock: Path, fcntl: Any, what: str) -> int:
    """An open descriptor of ``lock`` holding its exclusive flock; ConfigError naming ``what`` (flag and path)
    when another process holds it."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            raise ConfigError(f"{what} is being written by another run "
                              f"({_lock_holder(lock)}); wait for it to end, or choose another output") from None
        try:  # the holder before us may have removed the file after we opened it: lock the current one
            same = os.stat(lock).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return descriptor
        os.close(descriptor)


def _remove_created(folders: list[Path]) -> None:
    """Remove the folders output_lock made, innermost first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _sibling(path: Path, role: str) -> Path:
    """A hidden unique name next to ``path`` (same file system, so renames are atomic)."""
    return path.with_name(f".{path.name}.{role}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_stale_siblings(path: Path) -> None:
    """Remove the staging folders a killed run left next to ``path`` (their process is gone). A moved-aside
    earlier result (``old``) is put back when the kill came before the new one took its place, else removed."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(staging|old)-(\d+)-[0-9a-f]{{8}}")
    if not path.parent.is_dir():
        return
    for sibling in sorted(path.parent.iterdir()):
        match = pattern.fullmatch(sibling.name)
        if not match or _process_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not path.exists():
            os.replace(sibling, path)
            logger.warning("restored %s from %s, where a killed run had moved it", path, sibling.name)
            continue
        shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
        logger.info("removed %s, left next to %s by a killed run", sibling.name, path)


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by setting it back."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask_to_files(paths: Iterable[Path]) -> None:
    """Give these files the mode a plain open() would have given them (see :func:`apply_umask`)."""
    mask = current_umask()
    for path in paths:
        if path.is_file() and not path.is_symlink():
            os.chmod(path, (0o777 if path.stat().st_mode & 0o111 else 0o666) & ~mask)


def apply_umask(folder: Path) -> None:
    """Give every file and folder below ``folder`` the mode a plain open()/mkdir() would have given it: some
    writers (safetensors through mkstemp) create private 0600 files, which would hide a shared model."""
    mask = current_umask()
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                executable = os.stat(target).st_mode & 0o111
                os.chmod(target, (0o777 if executable else 0o666) & ~mask)
    os.chmod(folder, 0o777 & ~mask)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder next to ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and deleted only after the swap; on failure the staging
    folder is removed and ``path`` is untouched. With ``overwrite`` False (no --force) a ``path`` that is not
    an empty folder at the swap (another run wrote it meanwhile) raises OutputExistsError instead.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(path)
    staging = _sibling(path, "staging")
    staging.mkdir()  # not mkdtemp: its 0700 mode would make the result private
    try:
        yield staging
        apply_umask(staging)
        previous = None
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if not overwrite:
                raise OutputExistsError(path, "it appeared while this command ran (another run writing the same "
                                              "output?); pass --force to overwrite it")
            previous = _sibling(path, "old")
            os.replace(path, previous)
        os.replace(staging, path)  # an empty existing folder is replaced by rename(2)
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def staged_file(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield where to write ``path``'s new content: a file name inside a fresh staging folder next to ``path``.

    The folder is the caller's scratch space too (intermediate files die with it). When the body returns, the
    yielded file (which it must have written) gets the umask's permissions and replaces ``path`` in one rename,
    synced; when the body raises, ``path`` is untouched. The staging folder is removed either way; a stale one
    left by a killed process is removed on the next call. Raises FileNotFoundError if the body wrote nothing;
    with ``overwrite`` False (no --force), OutputExistsError if ``path`` appeared meanwhile (:func:`publish_new`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_siblings(path)
    staging = _sibling(path, "staging")
    staging.mkdir()
    try:
        staged = staging / path.name
        yield staged
        apply_umask_to_files([staged])
        if overwrite:
            os.replace(staged, path)
        else:  # never replaces: another run may have written ``path`` meanwhile
            publish_new(staged, path)
        _sync_directory(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *, overwrite: bool = True) -> Iterator[Any]:
    """Write to a temporary file next to ``path`` and rename it over ``path`` only on success.

    If the body raises, ``path`` keeps its old content and the temporary file is removed. With ``overwrite``
    False (a command run without --force) the file is published with link(2), which never replaces: a ``path``
    that appeared while the command ran (another run writing the same output) raises OutputExistsError.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 honours the umask (mkstemp would leave the result readable by its owner only).
    descriptor = os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, mode, encoding=None if "b" in mode else "utf-8",
                       newline=None if "b" in mode else "\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            with contextlib.suppress(FileNotFoundError):
                os.chmod(temp_path, path.stat().st_mode & 0o7777)  # keep the permissions of a replaced file
            os.replace(temp_path, path)
        else:
            publish_new(temp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise
    _sync_directory(path.parent)


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike], *, overwrite: bool = True) -> Iterator[list[Any]]:
    """Write several text files as one: yields a handle per path (same order); all are published, or none.

    Each is written to a temporary file next to its path. On success they are published in order: a replaced
    file is first moved aside, and if publishing any of them fails (a folder in its place, or with ``overwrite``
    False a file another run wrote meanwhile: OutputExistsError), those already published are taken back and
    the moved-aside files restored, so the set is never a mix of two runs. If the body raises, nothing changes.
    """
    paths = [Path(path) for path in paths]
    if len({path.resolve() for path in paths}) < len(paths):  # the second would silently replace the first
        raise ValueError(f"atomic_files: a path is given twice in {[str(path) for path in paths]}")
    temps: list[Path] = []
    try:
        with contextlib.ExitStack() as stack:
            handles = []
            for path in paths:
                path.parent.mkdir(parents=True, exist_ok=True)
                clean_stale_siblings(path)  # a file a killed run had moved aside comes back first
                temps.append(path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
                descriptor = os.open(temps[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
                handles.append(stack.enter_context(os.fdopen(descriptor, "w", encoding="utf-8", newline="\n")))
            yield handles
            for handle in handles:
                handle.flush()
                os.fsync(handle.fileno())
        _publish_together(list(zip(temps, paths)), overwrite)
    finally:
        for temp in temps:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)


def _publish_together(moves: list[tuple[Path, Path]], overwrite: bool) -> None:
    """Rename each temporary file onto its path; on any failure undo the renames already made (see atomic_files)."""
    done: list[tuple[Path, Optional[Path]]] = []  # (published path, where its previous file was moved)
    try:
        for temp, path in moves:
            aside = None
            if overwrite and path.is_file():
                os.chmod(temp, path.stat().st_mode & 0o7777)  # keep the permissions of a replaced file
                aside = _sibling(path, "old")
                os.replace(path, aside)
            try:
                if overwrite:
                    os.replace(temp, path)
                else:
                    publish_new(temp, path)
            except BaseException:
                if aside is not None:
                    os.replace(aside, path)
                raise
            done.append((path, aside))
    except BaseException:
        for path, aside in reversed(done):
            if aside is not None:
                os.replace(aside, path)
            else:
                os.unlink(path)
        raise
    for path, aside in done:
        if aside is not None:
            os.unlink(aside)
    for directory in {path.parent for _, path in moves}:
        _sync_directory(directory)


def publish_new(temp_path: Path, path: Path) -> None:
    """Give ``temp_path`` the name ``path`` only if no file has it (atomic: link fails on an existing name)."""
    try:
        os.link(temp_path, path)
    except FileExistsError:
        raise OutputExistsError(path, "it appeared while this command ran (another run writing the same output?); "
                                      "pass --force to overwrite it") from None
    except OSError:  # a file system without hard links: the check made before the work has to do
        if path.exists():
            raise OutputExistsError(path) from None
        os.replace(temp_path, path)
        return
    os.unlink(temp_path)


def _sync_directory(directory: Path) -> None:
    """Make the rename durable; best effort (not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path) as handle:
        handle.write(text)
