"""``hand-gestures download``: fetch HaGRID archives and unpack them into the layout :func:`load_hagrid` reads.

Releases and subsets (URLs as documented in the hukenovs/hagrid README and
download.py; see docs/getting_hagrid.md for where each one was found):

* ``--version v1`` -- HaGRID (2022), 18 gestures, ``ann_*`` layout:
  ``subsample`` (100 images per class), ``512`` (``hagrid_512.zip``),
  ``full`` (``train_val_<class>.zip`` x classes + ``test.zip``) and
  ``annotations`` (``ann_train_val``, ``ann_test``, ``ann_subsample``).
* ``--version v2`` -- HaGRIDv2 (2024), 33 gestures + ``no_gesture``,
  ``hagrid_annotations`` layout: ``512`` (``hagridv2_512.zip``), ``full``
  (``<class>.zip`` x classes) and ``annotations`` (``annotations.zip``).

Every archive is streamed to ``<archives>/<name>.part`` (resumed with an HTTP
``Range`` request when the server allows it), renamed when complete, checked
with :meth:`zipfile.ZipFile.testzip`, unpacked into a staging folder and moved
into place::

    v1: <out>/ann_train_val/<class>.json  <out>/ann_test/  <out>/ann_subsample/
        <out>/{train_val,test,subsample,hagrid_512}/<class>/<uuid>.jpg
    v2: <out>/hagrid_annotations/{train,val,test}/<class>.json
        <out>/{hagrid_dataset,hagrid_dataset_512}/<class>/<uuid>.jpg

whatever folder names the archive itself uses, so :func:`load_hagrid` finds
it. A ``<name>.done`` file beside the archive marks it unpacked; a re-run skips
it. Every failure is a :class:`DownloadError` (a :class:`DataError`) naming
the URL or file, so the CLI prints one line instead of a traceback.
"""
from __future__ import annotations

import errno
import http.client
import json
import os
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from tqdm import tqdm

from common.errors import DataError

from .classes import GESTURES_18, GESTURES_33, KNOWN_LABELS, NO_GESTURE, class_names
from .hagrid import SPLITS, V1_ANNOTATION_DIRS

DOC = "docs/getting_hagrid.md"
HELP = "download HaGRID archives (v1 or v2), check them and unpack them into the layout the loader reads"
CHUNK = 1 << 20
USER_AGENT = "hand-gestures-classifier (urllib)"
GB, MB = 1e9, 1e6

# --------------------------------------------------------------------------- #
# where the archives are (see docs/getting_hagrid.md for the sources)
# --------------------------------------------------------------------------- #
#: HaGRID v1 (2022): hukenovs/hagrid README.md @56aaf9d / download.py @e97359c.
V1_URL = "https://n-usr-2uzac.s3pd12.sbercloud.ru/b-usr-2uzac-mv4/hagrid/"
#: HaGRID v1 512px ("max_side = 512p"): README.md @56aaf9d.
V1_512_URL = "https://n-ws-620xz-pd11.s3pd11.sbercloud.ru/b-ws-620xz-pd11-jux/hagrid/hagrid/hagrid_512.zip"
#: HaGRIDv2 (2024): README.md and download.py @0f425c4. The 18 v1 gestures but
#: ``one`` and ``rock`` are the HaGRID 2.0 (2023) archives under ``V2_OLD_URL``.
V2_OLD_URL = "https://rndml-team-cv.obs.ru-moscow-1.hc.sbercloud.ru/datasets/hagrid/hagrid_dataset_new_554800/hagrid_dataset/"
V2_URL = "https://rndml-team-cv.obs.ru-moscow-1.hc.sbercloud.ru/datasets/hagrid_v2/"

#: Documented sizes in GB (README tables). None: not documented.
V1_CLASS_GB = {
    "call": 39.1, "dislike": 38.7, "fist": 38.0, "four": 40.5, "like": 38.3, "mute": 39.5, "ok": 39.0,
    "one": 39.9, "palm": 39.3, "peace": 38.6, "peace_inverted": 38.6, "rock": 38.9, "stop": 38.3,
    "stop_inverted": 40.2, "three": 39.4, "three2": 38.5, "two_up": 41.2, "two_up_inverted": 39.2,
}
V2_CLASS_GB = {
    "call": 37.2, "dislike": 40.9, "fist": 42.3, "four": 43.1, "like": 42.2, "mute": 43.2, "ok": 42.5,
    "one": 42.7, "palm": 43.0, "peace": 41.4, "peace_inverted": 40.5, "rock": 41.7, "stop": 41.8,
    "stop_inverted": 41.4, "three": 42.2, "three2": 40.2, "two_up": 41.8, "two_up_inverted": 40.9,
    "grabbing": 48.7, "grip": 48.6, "hand_heart": 39.6, "hand_heart2": 42.6, "holy": 52.7,
    "little_finger": 48.6, "middle_finger": 50.5, "point": 50.4, "take_picture": 37.3, "three3": 54.0,
    "three_gun": 50.1, "thumb_index": 62.8, "thumb_index2": 24.8, "timeout": 39.5, "xsign": 51.3,
    NO_GESTURE: 0.4939,
}
#: v1 gestures whose HaGRIDv2 archive lives under hagrid_v2_zip/ rather than the 2023 folder.
V2_MOVED = {"one", "rock"}
#: download.py @0f425c4 spells this archive ``hands_heart2.zip``; the README links ``hand_heart2.zip``.
V2_ALTERNATE_NAMES = {"hand_heart2": ("hands_heart2.zip",)}

VERSIONS = ("v1", "v2")
SUBSETS = {"v1": ("subsample", "512", "full", "annotations"), "v2": ("512", "full", "annotations")}


class DownloadError(DataError):
    """A download or unpack step failed; the message names the URL or file and what to do."""


@dataclass(frozen=True)
class Archive:
    """One archive to fetch: where from, how big, and where its contents go."""

    name: str  # local file name (also the file name on a flat mirror, see --base-url)
    urls: tuple[str, ...]  # tried in order; the next one only when the server answers 404
    size: float | None  # documented size in bytes (approximate); None: not documented
    kind: str  # "images" or "annotations"
    dest: str  # images: folder under <out>; annotations: ann_* (v1) or hagrid_annotations (v2)
    cls: str | None = None  # the class of a per-class image archive


def _ann(name: str, size: float | None) -> Archive:
    return Archive(f"{name}.zip", (f"{V1_URL}{name}.zip",), size, "annotations", name)


def archives_for(version: str, subset: str, classes: Sequence[str]) -> list[Archive]:
    """The archives of one release/subset, per-class ones for ``classes`` only."""
    if version not in SUBSETS:
        raise DownloadError("--version", f"unknown version {version!r}; choose one of {', '.join(VERSIONS)}")
    if subset not in SUBSETS[version]:
        raise DownloadError("--subset", f"HaGRID {version} has no {subset!r} subset; it has "
                            f"{', '.join(SUBSETS[version])} (see {DOC})")
    ann_tv, ann_test = _ann("ann_train_val", None), _ann("ann_test", 27.3 * MB)
    ann_sub = _ann("ann_subsample", 1.2 * MB)
    if version == "v1":
        if subset == "subsample":
            return [Archive("subsample.zip", (f"{V1_URL}subsample.zip",), 2.5 * GB, "images", "subsample"), ann_sub]
        if subset == "annotations":
            return [ann_tv, ann_test, ann_sub]
        if subset == "512":
            return [Archive("hagrid_512.zip", (V1_512_URL,), None, "images", "hagrid_512"), ann_tv, ann_test]
        per_class = [Archive(f"train_val_{c}.zip", (f"{V1_URL}train_val_{c}.zip",), V1_CLASS_GB[c] * GB,
                             "images", "train_val", c) for c in classes]
        return per_class + [Archive("test.zip", (f"{V1_URL}test.zip",), 60.4 * GB, "images", "test"), ann_tv, ann_test]
    annotations = Archive("annotations.zip", (f"{V2_URL}annotations_with_landmarks/annotations.zip",), None,
                          "annotations", "hagrid_annotations")
    if subset == "annotations":
        return [annotations]
    if subset == "512":
        return [Archive("hagridv2_512.zip", (f"{V2_URL}hagridv2_512.zip",), 119.4 * GB, "images",
                        "hagrid_dataset_512"), annotations]
    per_class = []
    for c in classes:
        base = V2_OLD_URL if c in GESTURES_18 and c not in V2_MOVED else f"{V2_URL}hagrid_v2_zip/"
        urls = (f"{base}{c}.zip",) + tuple(f"{base}{alt}" for alt in V2_ALTERNATE_NAMES.get(c, ()))
        per_class.append(Archive(f"{c}.zip", urls, V2_CLASS_GB[c] * GB, "images", "hagrid_dataset", c))
    return per_class + [annotations]


def parse_classes(spec: str, version: str) -> list[str]:
    """``--classes``: a preset (hagrid18, hagrid33, all) or comma-separated names valid for ``version``."""
    available = list(GESTURES_18) if version == "v1" else list(GESTURES_33) + [NO_GESTURE]
    names = available if spec == "all" else class_names(spec)
    if not names:
        raise DownloadError("--classes", "no class given")
    unknown = [n for n in names if n not in available]
    if unknown:
        why = (" (v1 has no no_gesture archive: those hands are inside the gesture images)"
               if NO_GESTURE in unknown else "")
        raise DownloadError("--classes", f"HaGRID {version} has no class(es) {', '.join(unknown)}{why}; "
                            f"it has {', '.join(available)}")
    return list(dict.fromkeys(names))


def with_base_url(archives: Iterable[Archive], base_url: str | None) -> list[Archive]:
    """A mirror is a flat folder of the archives under their local names: ``<base-url>/<name>``."""
    if not base_url:
        return list(archives)
    base = base_url.rstrip("/") + "/"
    return [Archive(a.name, (base + a.name,), a.size, a.kind, a.dest, a.cls) for a in archives]


def human(n: float | None) -> str:
    if n is None:
        return "size not documented"
    for unit, k in (("GB", GB), ("MB", MB), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------- #
# HTTP: resumable streaming download
# --------------------------------------------------------------------------- #
class _Transient(Exception):
    """A failure worth retrying (the .part file is kept and resumed)."""


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``(start, total)`` from ``Content-Range: bytes start-end/total``."""
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _unreachable(reason: object) -> bool:
    """True when a connection could not be opened at all (no DNS, no route, refused, connect timeout)."""
    if isinstance(reason, (socket.gaierror, ConnectionRefusedError, TimeoutError, socket.timeout)):
        return True
    return isinstance(reason, OSError) and reason.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN)


def _unreachable_message(url: str, reason: object, archives_dir: Path) -> str:
    host = urllib.parse.urlsplit(url).hostname or url
    return (f"cannot reach {host} ({reason}): the network is unreachable from this machine, or the HaGRID "
            f"server is down or has moved. Download the archives elsewhere (the URLs: add --dry-run) and put "
            f"the .zip files in {archives_dir}/; running the same command again then checks and unpacks them "
            f"without downloading. To place the data by hand instead, see {DOC}. A mirror: --base-url.")


def download_file(url: str, dest: Path, *, progress: bool = True, timeout: float = 60.0, retries: int = 3,
                  backoff: float = 5.0, archives_dir: Path | None = None,
                  echo: Callable[[str], None] = print) -> None:
    """Stream ``url`` to ``dest`` through ``dest.part``; resume a partial file when the server allows it.

    Connection drops and short bodies are retried ``retries`` times (resuming);
    HTTP errors and unreachable hosts fail at once. ``dest`` appears only when
    complete (atomic rename).
    """
    archives_dir = archives_dir or dest.parent
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    attempt = 0
    while True:
        try:
            _download_once(url, dest, part, progress=progress, timeout=timeout, archives_dir=archives_dir, echo=echo)
            return
        except _Transient as e:
            attempt += 1
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries:
                raise DownloadError(url, f"download failed: {e}. The {human(have)} received so far are kept in "
                                         f"{part}; run the command again to resume") from None
            echo(f"  {e}; retrying ({attempt}/{retries}) from byte {have}")
            time.sleep(backoff * attempt)


def _download_once(url: str, dest: Path, part: Path, *, progress: bool, timeout: float, archives_dir: Path,
                   echo: Callable[[str], None]) -> None:
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:  # asked past the end: the .part may already be whole
            m = re.match(r"bytes \*/(\d+)", e.headers.get("Content-Range", ""))
            if m and int(m.group(1)) == offset:
                os.replace(part, dest)
                return
            echo(f"  the server refused to resume {part.name} (HTTP 416); starting again")
            part.unlink()
            _download_once(url, dest, part, progress=progress, timeout=timeout, archives_dir=archives_dir, echo=echo)
            return
        hint = " (the archive may have moved: see " + DOC + ", or use --base-url for a mirror)" if e.code == 404 else ""
        raise DownloadError(url, f"HTTP {e.code} {e.reason}{hint}") from None
    except urllib.error.URLError as e:
        if _unreachable(e.reason):
            raise DownloadError(url, _unreachable_message(url, e.reason, archives_dir)) from None
        raise _Transient(f"connection failed ({e.reason})") from None
    except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise _Transient(f"connection failed ({e!r})") from None

    with resp:
        length = resp.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if offset and resp.status == 206:
            cr = _content_range(resp.headers.get("Content-Range"))
            if cr is None or cr[0] != offset:
                part.unlink()
                raise _Transient(f"the server answered the resume request with Content-Range "
                                 f"{resp.headers.get('Content-Range')!r}; starting again")
            mode, total = "ab", cr[1] if cr[1] is not None else (offset + length if length is not None else None)
            echo(f"  resuming {dest.name} from {human(offset)}")
        else:
            if offset:
                echo(f"  the server does not resume downloads (HTTP {resp.status}); restarting {dest.name}")
            offset, mode, total = 0, "wb", length
        if total is not None:
            free = shutil.disk_usage(part.parent).free
            if total - offset > free:
                raise DownloadError(dest, f"needs {human(total - offset)} more but only {human(free)} is free "
                                          f"on {part.parent}")
        try:
            with open(part, mode) as fh, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                               unit_divisor=1024, desc=dest.name, disable=not progress,
                                               leave=False, file=sys.stderr) as bar:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    fh.write(chunk)
                    bar.update(len(chunk))
        except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise _Transient(f"the connection broke ({type(e).__name__}: {e})") from None
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Transient(f"the connection closed after {human(size)} of {human(total)} ({size} of {total} bytes)")
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(url, f"received {size} bytes but the server announced {total}; the partial file was "
                                 "deleted, run again")
    os.replace(part, dest)


def fetch_archive(archive: Archive, dest: Path, **kw) -> None:
    """Download ``archive`` trying its URLs in order (the next one only after a 404)."""
    for i, url in enumerate(archive.urls):
        try:
            download_file(url, dest, **kw)
            return
        except DownloadError as e:
            if i + 1 < len(archive.urls) and "HTTP 404" in e.problem:
                kw.get("echo", print)(f"  {url}: HTTP 404, trying {archive.urls[i + 1]}")
                continue
            raise


# --------------------------------------------------------------------------- #
# checking and unpacking
# --------------------------------------------------------------------------- #
def verify_zip(path: Path) -> int:
    """Check every member's CRC (:meth:`ZipFile.testzip`); returns the member count or raises naming the file.

    A bad archive is renamed ``<name>.corrupt`` so the next run downloads it again.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            n = len(zf.infolist())
        problem = f"member {bad!r} is corrupt (CRC check failed)" if bad else ""
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        problem = f"not a valid zip archive ({e})"
    if problem:
        corrupt = path.with_name(path.name + ".corrupt")
        os.replace(path, corrupt)
        raise DownloadError(path, f"{problem}: a truncated or damaged download, or the server sent something "
                                  f"else. It was moved to {corrupt.name}; run the command again to download it "
                                  "afresh (delete the .corrupt file once done)")
    return n


def _class_of(dirname: str) -> str | None:
    """The HaGRID class a folder name stands for (``call``, ``train_val_call``, ``test_call``), else None."""
    if dirname in KNOWN_LABELS:
        return dirname
    for prefix in ("train_val_", "test_"):
        if dirname.startswith(prefix) and dirname[len(prefix):] in KNOWN_LABELS:
            return dirname[len(prefix):]
    return None


def _wanted(member: str, selected: set[str] | None) -> bool:
    """Skip macOS resource forks and images of classes not asked for."""
    parts = member.split("/")
    if parts[0] == "__MACOSX" or any(p.startswith("._") for p in parts):
        return False
    if selected is None:
        return True
    for p in parts[:-1]:
        cls = _class_of(p)
        if cls is not None:
            return cls in selected
    return True


def extract(path: Path, staging: Path, selected: set[str] | None, *, progress: bool = True) -> int:
    """Unpack the wanted members of ``path`` into ``staging``; returns how many were written."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if _wanted(i.filename, selected)]
            need, free = sum(i.file_size for i in members), shutil.disk_usage(staging).free
            if need > free:
                raise DownloadError(path, f"unpacking needs {human(need)} but only {human(free)} is free on "
                                          f"{staging.parent}; free some space, or keep the archives on another "
                                          "disk (--archives-dir) and delete each once unpacked (--remove-archives)")
            with tqdm(total=need, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=f"unpack {path.name}", disable=not progress, leave=False, file=sys.stderr) as bar:
                for info in members:
                    zf.extract(info, staging)
                    bar.update(info.file_size)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise DownloadError(path, f"cannot unpack ({e}); delete it and run again") from None
    except OSError as e:
        raise DownloadError(path, f"cannot unpack into {staging}: {e}") from None
    return len(members)


def _move_tree(src: Path, dst: Path) -> int:
    """Move the files of ``src`` into ``dst`` (merging); returns the number of files moved."""
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        n = sum(len(files) for _, _, files in os.walk(src))
        os.replace(src, dst)
        return n
    n = 0
    for d, _, files in os.walk(src):
        target = dst / Path(d).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for f in files:
            os.replace(os.path.join(d, f), target / f)
            n += 1
    return n


def _first_members(staging: Path, k: int = 8) -> str:
    found = [str(p.relative_to(staging)) for p in sorted(staging.rglob("*"))[:k]]
    return ", ".join(found) if found else "(empty)"


def place(archive: Archive, staging: Path, out: Path) -> str:
    """Move what ``archive`` unpacked into ``staging`` to where :func:`load_hagrid` looks; returns a summary."""
    n_json = n_img = 0
    ann_dirs: list[Path] = []
    json_files: list[Path] = []
    for d, dirnames, files in os.walk(staging):  # one pass, no stat per file
        ann_dirs.extend(Path(d, n) for n in dirnames if n in V1_ANNOTATION_DIRS)
        json_files.extend(Path(d, f) for f in files if f.endswith(".json") and not f.startswith("._"))
    loose: list[Path] = []
    for f in json_files:
        if f.parent in ann_dirs:  # v1 annotation folders, wherever the archive put them
            target = out / f.parent.name
        elif f.parent.name in SPLITS and (archive.dest == "hagrid_annotations" or "hagrid_annotations" in f.parts):
            target = out / "hagrid_annotations" / f.parent.name  # v2 <split>/<class>.json
        else:
            loose.append(f)
            continue
        target.mkdir(parents=True, exist_ok=True)
        os.replace(f, target / f.name)
        n_json += 1
    if archive.kind == "annotations":
        if archive.dest in V1_ANNOTATION_DIRS and not ann_dirs:
            names = [f.name for f in loose]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise DownloadError(staging, f"{archive.name} holds several files named {', '.join(dup)}; "
                                             f"unpack it by hand (see {DOC})")
            for f in loose:
                (out / archive.dest).mkdir(parents=True, exist_ok=True)
                os.replace(f, out / archive.dest / f.name)
                n_json += 1
        if n_json == 0:
            expect = ("train/, val/, test/ folders of <class>.json" if archive.dest == "hagrid_annotations"
                      else "<class>.json files")
            raise DownloadError(archive.name, f"no annotation files found (expected {expect}); it holds "
                                              f"{_first_members(staging)}")
        return f"{n_json} annotation files -> {out / archive.dest}"
    # images: every class folder, at any depth, goes to <out>/<dest>/<class>/
    class_dirs: list[tuple[Path, str]] = []
    frontier = [staging]
    while frontier:
        nxt = []
        for d in frontier:
            for e in sorted(d.iterdir()):
                if not e.is_dir() or e.name in V1_ANNOTATION_DIRS or e.name == "hagrid_annotations":
                    continue
                cls = _class_of(e.name)
                if cls is not None:
                    class_dirs.append((e, cls))
                else:
                    nxt.append(e)
        frontier = nxt
    if not class_dirs and archive.cls:
        images = [p for p in staging.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
        dirs = sorted({p.parent for p in images})
        if len(dirs) == 1:  # a per-class archive with the images at its top (or in one unnamed folder)
            class_dirs = [(dirs[0], archive.cls)]
    if not class_dirs and n_json == 0:
        raise DownloadError(archive.name, f"no class folders (call/, train_val_call/, ...) found; it holds "
                                          f"{_first_members(staging)}. Unpack it by hand (see {DOC})")
    for d, cls in class_dirs:
        n_img += _move_tree(d, out / archive.dest / cls)
    classes = sorted({c for _, c in class_dirs})
    what = f"{n_img} files in {len(classes)} class folder(s) -> {out / archive.dest}"
    return what + (f", {n_json} annotation files" if n_json else "")


# --------------------------------------------------------------------------- #
# the command
# --------------------------------------------------------------------------- #
def _marker(archives_dir: Path, archive: Archive) -> Path:
    return archives_dir / (archive.name + ".done")


def _done_classes(marker: Path) -> set[str] | None | bool:
    """Classes unpacked according to ``marker`` (None: all), or False when there is no usable marker."""
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return None if data.get("classes") is None else set(data["classes"])


def plan_lines(archives: Sequence[Archive], archives_dir: Path) -> tuple[list[str], str]:
    lines, total, unknown = [], 0.0, 0
    for a in archives:
        status = ""
        if _marker(archives_dir, a).exists():
            status = "  [done]"
        elif (archives_dir / a.name).exists():
            status = "  [downloaded]"
        elif (archives_dir / (a.name + ".part")).exists():
            status = f"  [partial: {human((archives_dir / (a.name + '.part')).stat().st_size)}]"
        lines.append(f"  {a.urls[0]}  ({human(a.size)}){status}")
        lines.extend(f"      or {u}" for u in a.urls[1:])
        if a.size is None:
            unknown += 1
        else:
            total += a.size
    summary = f"total: about {human(total)} in {len(archives)} archive(s)"
    if unknown:
        summary += f", plus {unknown} of undocumented size"
    return lines, summary


def download_hagrid(version: str, subset: str, classes: Sequence[str], out: Path, *, base_url: str | None = None,
                    archives_dir: Path | None = None, dry_run: bool = False, progress: bool = True,
                    remove_archives: bool = False, timeout: float = 60.0, retries: int = 3, backoff: float = 5.0,
                    echo: Callable[[str], None] = print) -> list[Archive]:
    """Fetch, check and unpack one HaGRID subset into ``out``; returns the archives it covered."""
    out = Path(out)
    archives_dir = Path(archives_dir) if archives_dir else out / "archives"
    archives = with_base_url(archives_for(version, subset, classes), base_url)
    per_class_selection = set(classes)
    echo(f"HaGRID {version} {subset} -> {out}  (archives in {archives_dir})")
    if dry_run:
        lines, summary = plan_lines(archives, archives_dir)
        for line in lines:
            echo(line)
        echo(summary + " (sizes as documented by HaGRID; nothing was downloaded)")
        return archives
    out.mkdir(parents=True, exist_ok=True)
    archives_dir.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(archives, 1):
        zip_path, marker = archives_dir / a.name, _marker(archives_dir, a)
        # single-archive image sets are unpacked for the selected classes only
        selected = per_class_selection if a.kind == "images" and a.cls is None else None
        tag = f"[{i}/{len(archives)}] {a.name}"
        done = _done_classes(marker) if marker.exists() else False
        if done is not False and (done is None or selected is None or selected <= done):
            echo(f"{tag}: already downloaded and unpacked, skipped")
            continue
        if zip_path.exists():
            echo(f"{tag}: already downloaded")
        else:
            echo(f"{tag}: downloading {a.urls[0]} ({human(a.size)})")
            fetch_archive(a, zip_path, progress=progress, timeout=timeout, retries=retries, backoff=backoff,
                          archives_dir=archives_dir, echo=echo)
        echo(f"{tag}: checking ({human(zip_path.stat().st_size)})")
        verify_zip(zip_path)
        staging = out / f".staging-{a.name}"
        try:
            extract(zip_path, staging, selected, progress=progress)
            echo(f"{tag}: {place(a, staging, out)}")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        unpacked = sorted(selected | (done or set())) if selected is not None else None
        marker.write_text(json.dumps({"url": a.urls[0], "bytes": zip_path.stat().st_size, "classes": unpacked,
                                      "unpacked_at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        if remove_archives:
            zip_path.unlink()
            echo(f"{tag}: archive removed (--remove-archives)")
    echo(f"done: {out} holds the HaGRID {version} layout; next: hand-gestures inspect --data-dir {out}")
    return archives
