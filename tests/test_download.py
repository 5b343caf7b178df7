"""``hand-gestures download`` against tiny HaGRID-shaped archives served from 127.0.0.1.

Each test builds real zips (small JPEGs + per-class JSON in the HaGRID formats)
in tmp_path, serves them with ``http.server`` on 127.0.0.1 in a thread, and
checks that what lands on disk is what :func:`load_hagrid` reads.
"""
from __future__ import annotations

import argparse
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hagrid_fixtures import count_hands, make_specs, write_v1, write_v2

from common.errors import DataError
from data_loaders import download as dl
from data_loaders.classes import make_class_set
from data_loaders.download import DownloadError
from data_loaders.hagrid import load_hagrid
from engine import cli


# --------------------------------------------------------------------------- #
# a local HTTP server with optional Range support and truncation
# --------------------------------------------------------------------------- #
class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        srv = self.server
        name = self.path.lstrip("/")
        rng = self.headers.get("Range")
        srv.log.append((name, rng))
        data = srv.files.get(name)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.range_ok:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("Content-Type", "application/zip")
        self.end_headers()
        stop = srv.truncate.get(name, len(data))  # serve only up to this byte, then hang up
        self.wfile.write(data[start:max(stop, start)])

    def log_message(self, *args):  # keep pytest output clean
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []
        self.range_ok = True
        self.truncate: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def gets(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.log if n == name]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- #
# archives in the HaGRID formats
# --------------------------------------------------------------------------- #
def zip_files(path: Path, members: dict[str, Path], *, stored: bool = False) -> bytes:
    """Write ``{arcname: file}`` into a zip at ``path`` and return its bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED) as zf:
        for arc, f in members.items():
            zf.write(f, arc)
    return path.read_bytes()


def tree(root: Path, sub: str, prefix: str) -> dict[str, Path]:
    """Every file under ``root/sub`` as ``prefix/<relative path>`` (prefix "" keeps them at the top)."""
    base = root / sub
    return {"/".join(p for p in (prefix, f.relative_to(base).as_posix()) if p): f
            for f in sorted(base.rglob("*")) if f.is_file()}


def args_for(out: Path, *argv: str) -> argparse.Namespace:
    argv = ["download", "--out", str(out), "--no-progress", "--backoff", "0", *argv]
    return cli.build_parser(argv).parse_args(argv)


@pytest.fixture
def v1_subsample(tmp_path, server):
    """HaGRID v1 subsample archives (``subsample/<class>/*.jpg``, ``ann_subsample/<class>.json``) on the server."""
    specs = make_specs(classes=("call", "like"), per_class=3, groups=("subsample",))
    src = write_v1(tmp_path / "src", specs, layout="class_dirs")
    server.files["subsample.zip"] = zip_files(
        tmp_path / "subsample.zip", {**tree(src, "call", "subsample/call"), **tree(src, "like", "subsample/like")})
    server.files["ann_subsample.zip"] = zip_files(tmp_path / "ann_subsample.zip",
                                                  tree(src, "ann_subsample", "ann_subsample"))
    return specs


# --------------------------------------------------------------------------- #
# download + unpack -> a layout load_hagrid reads
# --------------------------------------------------------------------------- #
def test_v1_subsample_download_gives_a_layout_load_hagrid_reads(tmp_path, server, v1_subsample, capsys):
    out = tmp_path / "hagrid"
    assert cli.run_args(args_for(out, "--version", "v1", "--subset", "subsample", "--classes", "call,like",
                           "--base-url", server.url)) == 0
    assert sorted(p.name for p in (out / "subsample").iterdir()) == ["call", "like"]
    assert (out / "ann_subsample" / "call.json").is_file()
    ann = load_hagrid(out, make_class_set("call,like"))
    assert ann.format == "v1"
    assert len(ann.records) == count_hands(v1_subsample, ["call", "like"])
    assert all(r.image_path.is_file() for r in ann.records)
    assert not list(out.glob(".staging-*"))
    assert sorted(p.name for p in (out / "archives").iterdir()) == [
        "ann_subsample.zip", "ann_subsample.zip.done", "subsample.zip", "subsample.zip.done"]

    # a second run skips both archives without a single request
    n_requests = len(server.log)
    capsys.readouterr()
    assert cli.run_args(args_for(out, "--subset", "subsample", "--classes", "call,like", "--base-url", server.url)) == 0
    assert len(server.log) == n_requests
    assert capsys.readouterr().out.count("already downloaded and unpacked, skipped") == 2


def test_v2_512_unpacks_selected_classes_whatever_the_archive_folders(tmp_path, server):
    specs = make_specs(classes=("call", "fist", "grabbing"), per_class=4)
    src = write_v2(tmp_path / "src", specs, images_dir="imgs")
    # folder names inside the archives differ from the on-disk layout on purpose
    server.files["hagridv2_512.zip"] = zip_files(tmp_path / "512.zip", tree(src, "imgs", "HaGRIDv2_dataset_512"))
    server.files["annotations.zip"] = zip_files(tmp_path / "ann.zip", tree(src, "hagrid_annotations", "annotations"))
    out = tmp_path / "hagrid"
    dl.download_hagrid("v2", "512", ["call", "fist"], out, base_url=server.url, progress=False, backoff=0)
    assert sorted(p.name for p in (out / "hagrid_dataset_512").iterdir()) == ["call", "fist"]  # grabbing skipped
    assert sorted(p.name for p in (out / "hagrid_annotations").iterdir()) == ["test", "train", "val"]
    ann = load_hagrid(out, make_class_set("call,fist"))
    assert ann.format == "v2" and set(ann.splits) == {"train", "val", "test"}
    assert len(ann.records) == count_hands(specs[:8], ["call", "fist"])
    assert all(r.image_path.is_file() for r in ann.records)

    # asking for one more class later unpacks it from the kept archive, without downloading again
    n_requests = len(server.log)
    dl.download_hagrid("v2", "512", ["call", "fist", "grabbing"], out, base_url=server.url, progress=False)
    assert len(server.log) == n_requests
    assert (out / "hagrid_dataset_512" / "grabbing").is_dir()


def test_v1_full_per_class_archives(tmp_path, server):
    specs = make_specs(classes=("call", "fist"), per_class=4, groups=("train_val", "test"))
    src = write_v1(tmp_path / "src", specs, layout="archive")  # train_val_<c>/, test_<c>/, ann_*/
    server.files["train_val_call.zip"] = zip_files(tmp_path / "a.zip", tree(src, "train_val_call", "train_val_call"))
    server.files["train_val_fist.zip"] = zip_files(tmp_path / "b.zip", tree(src, "train_val_fist", ""))  # loose
    server.files["test.zip"] = zip_files(tmp_path / "c.zip", {**tree(src, "test_call", "test/test_call"),
                                                              **tree(src, "test_fist", "test/test_fist")})
    server.files["ann_train_val.zip"] = zip_files(tmp_path / "d.zip", tree(src, "ann_train_val", ""))  # loose
    server.files["ann_test.zip"] = zip_files(tmp_path / "e.zip", tree(src, "ann_test", "ann_test"))
    out = tmp_path / "hagrid"
    dl.download_hagrid("v1", "full", ["call", "fist"], out, base_url=server.url, progress=False,
                       remove_archives=True)
    assert {p.name for p in (out / "train_val").iterdir()} == {"call", "fist"}
    assert {p.name for p in (out / "test").iterdir()} == {"call", "fist"}
    assert not list((out / "archives").glob("*.zip"))  # --remove-archives
    ann = load_hagrid(out, make_class_set("call,fist"))
    assert ann.format == "v1" and {"train", "test"} <= set(ann.splits)  # 3 users: val may get none (hash split)
    assert len(ann.records) == count_hands(specs, ["call", "fist"])
    assert all(r.image_path.is_file() for r in ann.records)
    n_requests = len(server.log)
    dl.download_hagrid("v1", "full", ["call", "fist"], out, base_url=server.url, progress=False)
    assert len(server.log) == n_requests  # the .done markers outlive the removed archives


# --------------------------------------------------------------------------- #
# resuming, restarting, truncation
# --------------------------------------------------------------------------- #
def test_partial_file_is_resumed_with_range(tmp_path, server, v1_subsample):
    out = tmp_path / "hagrid"
    data = server.files["subsample.zip"]
    half = len(data) // 2
    (out / "archives").mkdir(parents=True)
    (out / "archives" / "subsample.zip.part").write_bytes(data[:half])
    dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False)
    assert server.gets("subsample.zip") == [f"bytes={half}-"]
    assert (out / "archives" / "subsample.zip").read_bytes() == data
    assert not (out / "archives" / "subsample.zip.part").exists()


def test_server_without_range_support_restarts(tmp_path, server, v1_subsample):
    server.range_ok = False
    out = tmp_path / "hagrid"
    (out / "archives").mkdir(parents=True)
    (out / "archives" / "subsample.zip.part").write_bytes(b"stale bytes from some other file")
    dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False)
    assert (out / "archives" / "subsample.zip").read_bytes() == server.files["subsample.zip"]


def test_truncated_download_is_reported_then_resumed(tmp_path, server, v1_subsample):
    out = tmp_path / "hagrid"
    data = server.files["subsample.zip"]
    server.truncate["subsample.zip"] = len(data) // 3
    with pytest.raises(DownloadError) as e:
        dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False,
                           retries=1, backoff=0)
    msg = str(e.value)
    assert f"{server.url}/subsample.zip" in msg and "closed after" in msg and "run the command again" in msg
    part = out / "archives" / "subsample.zip.part"
    assert part.read_bytes() == data[: len(data) // 3]
    del server.truncate["subsample.zip"]  # the connection is good again: the next run resumes
    dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False)
    assert (out / "archives" / "subsample.zip").read_bytes() == data
    assert server.gets("subsample.zip")[-1] == f"bytes={len(data) // 3}-"


def test_complete_part_file_is_accepted_on_416(tmp_path, server, v1_subsample):
    out = tmp_path / "hagrid"
    (out / "archives").mkdir(parents=True)
    (out / "archives" / "subsample.zip.part").write_bytes(server.files["subsample.zip"])
    dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False)
    assert (out / "archives" / "subsample.zip").read_bytes() == server.files["subsample.zip"]


# --------------------------------------------------------------------------- #
# errors that name what failed
# --------------------------------------------------------------------------- #
def test_http_404_names_the_url(tmp_path, server):
    with pytest.raises(DownloadError) as e:
        dl.download_hagrid("v1", "subsample", ["call"], tmp_path / "hagrid", base_url=server.url, progress=False)
    assert f"{server.url}/subsample.zip" in str(e.value) and "HTTP 404" in str(e.value)
    assert isinstance(e.value, DataError)  # the CLI prints it as one line


@pytest.mark.parametrize("damage", ["not_a_zip", "bad_crc"])
def test_corrupt_archive_names_the_file(tmp_path, server, v1_subsample, damage):
    if damage == "not_a_zip":
        server.files["subsample.zip"] = b"<html>this is an error page, not a zip</html>"
    else:  # a stored zip with one byte of member data flipped: only the CRC check sees it
        src = tmp_path / "member.bin"
        src.write_bytes(bytes(range(256)) * 8)
        data = bytearray(zip_files(tmp_path / "stored.zip", {"subsample/call/x.jpg": src}, stored=True))
        data[len(data) // 3] ^= 0xFF
        server.files["subsample.zip"] = bytes(data)
    out = tmp_path / "hagrid"
    with pytest.raises(DownloadError) as e:
        dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=server.url, progress=False)
    msg = str(e.value)
    assert str(out / "archives" / "subsample.zip") in msg
    assert ("not a valid zip" in msg) if damage == "not_a_zip" else ("'subsample/call/x.jpg' is corrupt" in msg)
    assert (out / "archives" / "subsample.zip.corrupt").exists()
    assert not (out / "archives" / "subsample.zip").exists()  # so the next run downloads it again


def test_unreachable_host_says_so_and_points_to_the_manual_route(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as e:
        dl.download_hagrid("v1", "subsample", ["call"], tmp_path / "hagrid", base_url=f"http://127.0.0.1:{port}",
                           progress=False, timeout=5)
    msg = str(e.value)
    assert "cannot reach 127.0.0.1" in msg and "network is unreachable" in msg
    assert "docs/getting_hagrid.md" in msg and str(tmp_path / "hagrid" / "archives") in msg


def test_archives_placed_by_hand_are_checked_and_unpacked_offline(tmp_path, server, v1_subsample):
    out = tmp_path / "hagrid"
    (out / "archives").mkdir(parents=True)
    for name, data in server.files.items():  # as if copied from a machine with internet access
        (out / "archives" / name).write_bytes(data)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dl.download_hagrid("v1", "subsample", ["call", "like"], out, base_url=f"http://127.0.0.1:{port}",
                       progress=False)
    assert len(load_hagrid(out, make_class_set("call,like")).records) == count_hands(v1_subsample, ["call", "like"])


def test_bad_options_are_refused():
    with pytest.raises(DownloadError, match="has no 'subsample' subset"):
        dl.archives_for("v2", "subsample", ["call"])
    with pytest.raises(DownloadError, match="has no class"):
        dl.parse_classes("call,grabbing", "v1")
    with pytest.raises(DownloadError, match="no_gesture archive"):
        dl.parse_classes("no_gesture", "v1")
    assert dl.parse_classes("hagrid18", "v1") == list(dl.GESTURES_18)
    assert len(dl.parse_classes("all", "v2")) == 34


# --------------------------------------------------------------------------- #
# dry run and the catalogue
# --------------------------------------------------------------------------- #
def test_dry_run_lists_urls_and_total_without_downloading(tmp_path, server, capsys):
    out = tmp_path / "hagrid"
    assert cli.run_args(args_for(out, "--version", "v1", "--subset", "full", "--classes", "call,fist", "--dry-run")) == 0
    text = capsys.readouterr().out
    for name in ("train_val_call.zip", "train_val_fist.zip", "test.zip", "ann_train_val.zip", "ann_test.zip"):
        assert dl.V1_URL + name in text
    assert "train_val_like.zip" not in text
    assert re.search(r"total: about 137\.5 GB in 5 archive\(s\), plus 1 of undocumented size", text)
    assert not out.exists()
    cli.run_args(args_for(out, "--version", "v2", "--subset", "512", "--dry-run", "--base-url", server.url))
    text = capsys.readouterr().out
    assert f"{server.url}/hagridv2_512.zip" in text and f"{server.url}/annotations.zip" in text
    assert server.log == [] and not out.exists()


def test_v2_catalogue_follows_the_readme():
    arch = dl.archives_for("v2", "full", dl.parse_classes("all", "v2"))
    assert len(arch) == 35 and len({a.name for a in arch}) == 35
    by_name = {a.name: a for a in arch}
    assert by_name["call.zip"].urls == (dl.V2_OLD_URL + "call.zip",)
    assert by_name["one.zip"].urls == (dl.V2_URL + "hagrid_v2_zip/one.zip",)
    assert by_name["hand_heart2.zip"].urls[1].endswith("hagrid_v2_zip/hands_heart2.zip")
    assert by_name["annotations.zip"].dest == "hagrid_annotations"
    assert all(a.urls[0].startswith("https://") for a in arch)
