"""Downloading SAM weights: resumable, verified before use, clear when offline."""

from __future__ import annotations

import http.server
import threading

import pytest

from panosamic import weights
from panosamic.weights import SAM_FILES, download_sam_weights, file_md5, resolve_sam_weights
from tests.conftest import set_hub_offline

pytestmark = pytest.mark.slow
NAME = SAM_FILES["vit_b"]


class _Server:
    """Serves one file over HTTP with range requests; can corrupt what it sends."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.corrupt = False
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.ranges.append(self.headers.get("Range"))
                if self.path != f"/{NAME}":
                    self.send_error(404)
                    return
                data = outer.payload
                if outer.corrupt:
                    data = data[:1000] + bytes(b ^ 0xFF for b in data[1000:1100]) + data[1100:]
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                    self.send_response(206)
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                self.wfile.write(data[start:])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def sam_bytes(vitb_files) -> bytes:
    return (vitb_files / "sam_weights" / NAME).read_bytes()


@pytest.fixture
def server(sam_bytes, monkeypatch, tmp_path, vitb_files):
    srv = _Server(sam_bytes)
    monkeypatch.setenv(weights.SAM_URL_ENV, srv.url)
    monkeypatch.setenv(weights.SAM_CACHE_ENV, str(tmp_path / "cache"))
    set_hub_offline(monkeypatch, False)
    # Our random stand-in is not Meta's file: accept its checksum instead of the official one.
    monkeypatch.setitem(weights.SAM_MD5, NAME, file_md5(vitb_files / "sam_weights" / NAME))
    yield srv
    srv.close()


def test_download_into_cache_and_reuse(server, tmp_path):
    path = resolve_sam_weights("vit_b")
    assert path == tmp_path / "cache" / NAME
    assert path.read_bytes() == server.payload
    assert not list((tmp_path / "cache").glob("*.part"))
    assert resolve_sam_weights("vit_b") == path
    assert len(server.ranges) == 1  # the second call used the cache


def test_interrupted_download_resumes(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    half = len(server.payload) // 2
    (cache / (NAME + ".part")).write_bytes(server.payload[:half])
    path = download_sam_weights("vit_b", progress=False)
    assert server.ranges == [f"bytes={half}-"]
    assert path.read_bytes() == server.payload


def test_broken_download_never_reaches_the_cache(server, tmp_path):
    server.corrupt = True
    with pytest.raises(RuntimeError, match="broken and was discarded"):
        download_sam_weights("vit_b", progress=False)
    cache = tmp_path / "cache"
    assert not (cache / NAME).exists() and not (cache / (NAME + ".part")).exists()
    server.corrupt = False
    assert download_sam_weights("vit_b", progress=False).read_bytes() == server.payload


def test_wrong_file_fails_verification(server, tmp_path, monkeypatch):
    """Even with a matching checksum, a file without the official tensors is refused."""
    server.payload = b"not a checkpoint" * 1000
    monkeypatch.setitem(weights.SAM_MD5, NAME, None)
    with pytest.raises(RuntimeError, match="broken"):
        download_sam_weights("vit_b", progress=False)
    assert not (tmp_path / "cache" / NAME).exists()


def test_offline_errors_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.SAM_CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(weights.SAM_URL_ENV, "http://127.0.0.1:1/")
    set_hub_offline(monkeypatch, False)
    with pytest.raises(RuntimeError) as err:
        resolve_sam_weights("vit_b")
    assert "could not download" in str(err.value) and "sam_weights_path=" in str(err.value)
    assert f"https://dl.fbaipublicfiles.com/segment_anything/{NAME}" in str(err.value)
    set_hub_offline(monkeypatch, True)
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE"):
        resolve_sam_weights("vit_b")


def test_directory_lookup(tmp_path):
    (tmp_path / "sam_vit_l_0b3195.pth").write_bytes(b"x")
    assert resolve_sam_weights("vit_l", tmp_path) == tmp_path / "sam_vit_l_0b3195.pth"
    with pytest.raises(FileNotFoundError) as err:
        resolve_sam_weights("vit_h", tmp_path)
    assert "sam_vit_h_4b8939.pth" in str(err.value) and "sam_vit_l_0b3195.pth" in str(err.value)
