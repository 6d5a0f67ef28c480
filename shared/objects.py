"""Blobs in an object store or a shared path, for those larger than one wants in Redis: `TENSORQ_ARTIFACTS` names
where (`file:///mnt/models`, `s3://bucket/prefix`, any URL fsspec opens), `TENSORQ_ARTIFACTS_MIN_BYTES` from what
size (defaults.ARTIFACTS_MIN_BYTES). The blob's key then holds `url:<url>` of its object, which every reader opens
as it is (readers need no setting, only fsspec and, for s3, s3fs: `pip install 'tensorq[s3]'`).

Each write is a new object, named by the blob's key and a fresh generation, never overwritten: a reader that has
the URL reads one whole blob, and the script that swaps the key (shared/blobs.py) says which object the previous
generation was, for its writer to delete. fsspec is imported only when an object is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from shared.errors import BadInput, TensorqError
from shared.streamed import Streamed

PREFIX = b"url:"  # a blob key's value naming its object
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_url(url: str) -> str:
    """TENSORQ_ARTIFACTS as given, or BadInput: a URL with a scheme (file:///path, s3://bucket/prefix)."""
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*://.+", url):
        raise BadInput(f"TENSORQ_ARTIFACTS must be a URL such as file:///mnt/models or s3://bucket/prefix "
                       f"(got {url!r})")
    return url.rstrip("/")


def location(base: str, blob_key: str, generation: str) -> str:
    """The object for one generation of a blob: its key's parts as folders (`tensorq/job/<id>/ckpt.<gen>...`)."""
    parts = [_UNSAFE.sub("_", part) or "_" for part in blob_key.split(":")]
    return f"{base}/{'/'.join(parts)}.{generation}.safetensors"


def write(url: str, blob: Streamed) -> None:
    """Write the blob's parts to a new object, in order (fsspec's file buffers a block at a time)."""
    fs, path = _filesystem(url)
    try:
        fs.makedirs(_parent(path), exist_ok=True)
        with fs.open(path, "wb") as f:
            for part in blob.parts():
                f.write(part)
    except OSError as e:
        raise TensorqError(f"cannot write {url} ({_reason(e)}): check TENSORQ_ARTIFACTS") from None


def read(url: str) -> bytearray:
    """The whole object in one buffer allocated once (read straight into it)."""
    fs, path = _filesystem(url)
    try:
        buffer = bytearray(fs.size(path))
        view = memoryview(buffer)
        with fs.open(path, "rb") as f:
            got = 0
            while got < len(buffer):
                n = f.readinto(view[got:])
                if not n:
                    raise OSError(f"it ended after {got:,} of {len(buffer):,} bytes")
                got += n
    except OSError as e:
        raise TensorqError(f"cannot read {url} ({_reason(e)})") from None
    return buffer


def copy(url: str, write: Callable[[bytes | bytearray], object], block_bytes: int = 8 << 20) -> None:
    """The object handed to `write` a block at a time."""
    fs, path = _filesystem(url)
    try:
        with fs.open(path, "rb") as f:
            while block := f.read(block_bytes):
                write(block)
    except OSError as e:
        raise TensorqError(f"cannot read {url} ({_reason(e)})") from None


def remove(url: str) -> None:
    """Delete an object (gone already is fine), and for a path its folder once empty."""
    fs, path = _filesystem(url)
    try:
        fs.rm(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise TensorqError(f"cannot delete {url} ({_reason(e)})") from None
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
    if "file" in protocols:  # an object store has no folders to leave behind
        try:
            fs.rmdir(_parent(path))
        except OSError:
            pass  # not empty: another blob of the job is there


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise TensorqError(f"{url}: blobs in an object store need fsspec (pip install 'tensorq[artifacts]', or "
                           "'tensorq[s3]' for s3://)") from None
    try:
        found: tuple[Any, str] = fsspec.core.url_to_fs(url)
        return found
    except ImportError as e:  # s3:// without s3fs, and the like
        raise TensorqError(f"{url}: {e} (for s3: pip install 'tensorq[s3]')") from None


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__
