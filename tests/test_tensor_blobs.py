"""The streamed safetensors writer and the in-place reader (worker/tensor_blobs.py, shared/tensorfile.py), without
Redis: the bytes are the safetensors library's own, the parts are the tensors' own memory, the reader makes tensors
over the buffer it is given, and a corrupt file is a DecodeError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import save as np_save
from safetensors.torch import load, save

from shared import tensorfile
from shared.chunked import slices
from shared.errors import DecodeError
from shared.streamed import Streamed
from worker import tensor_blobs

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64, torch.int32, torch.int16,
          torch.int8, torch.uint8, torch.bool]


def mixed() -> dict[str, torch.Tensor]:
    """One tensor of each dtype (names out of dtype order), a 0-d one, an empty one, a non-contiguous one."""
    g = torch.Generator().manual_seed(3)
    tensors = {f"t{9 - i}": (torch.randn(3, 5, generator=g) * 50).to(d) for i, d in enumerate(DTYPES)}
    tensors["scalar"] = torch.tensor(2.5, dtype=torch.float64)
    tensors["empty"] = torch.zeros(0, 4)
    tensors["strided"] = torch.arange(24, dtype=torch.float32).reshape(4, 6).t()
    return tensors


def test_the_streamed_bytes_are_the_safetensors_librarys_own() -> None:
    """
    Given tensors of every dtype tensorq meets, 0-d, empty and non-contiguous ones, and one metadata entry
    When they are written streamed
    Then the bytes equal safetensors.torch.save's, and safetensors.torch.load reads back identical tensors.
    """
    tensors = mixed()
    streamed = tensor_blobs.blob(tensors, metadata={"state": '{"iteration": 40}'})
    data = streamed.joined()
    assert len(data) == streamed.size
    assert data == save({k: v.contiguous() for k, v in tensors.items()}, metadata={"state": '{"iteration": 40}'})
    back = load(data)
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name


def test_several_metadata_entries_read_back_as_the_library_reads_them(tmp_path) -> None:
    """(The library orders metadata by a hash map: its bytes may differ there, its reading does not.)"""
    from safetensors import safe_open

    meta = {"job": "abc", "spec": '{"kind": "train"}', "weights_at": "500"}
    path = tmp_path / "w.safetensors"
    path.write_bytes(tensor_blobs.blob({"w1": torch.ones(2, 3)}, metadata=meta).joined())
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == meta and torch.equal(f.get_tensor("w1"), torch.ones(2, 3))
    assert tensorfile.parse(path.read_bytes())[1] == meta


def test_the_parts_are_the_tensors_own_memory() -> None:
    """A contiguous CPU tensor is handed over as a view of itself: nothing copied before it is sent."""
    w = torch.randn(256, 256)
    parts = list(tensor_blobs.blob({"w": w}).parts())
    assert len(parts) == 2 and isinstance(parts[1], memoryview)
    assert np.frombuffer(parts[1], np.float32).__array_interface__["data"][0] == w.data_ptr()


def test_the_reader_makes_tensors_over_the_buffer_without_a_copy() -> None:
    """
    Given a blob read into a bytearray (as a chunked read leaves it)
    When it is loaded
    Then each tensor is a view into that buffer, writable, and equal to what was written.
    """
    tensors = mixed()
    buffer = bytearray(tensor_blobs.blob(tensors, metadata={"a": "b"}).joined())
    back, meta = tensor_blobs.load(buffer)
    assert meta == {"a": "b"}
    base = np.frombuffer(buffer, np.uint8).__array_interface__["data"][0]
    for name, t in tensors.items():
        assert torch.equal(back[name], t), name
        if t.numel():
            assert base <= back[name].data_ptr() < base + len(buffer), name
    back["t9"].add_(1)  # a resumed job trains its weights in place: the buffer is its own
    assert not torch.equal(back["t9"], tensors["t9"])


def test_each_tensor_is_copied_to_the_host_only_when_its_turn_comes(monkeypatch) -> None:
    """Each part is made when the writer asks for it (a GPU tensor's host copy then, dropped before the next)."""
    made: list[int] = []
    real = tensor_blobs.host_bytes
    monkeypatch.setattr(tensor_blobs, "host_bytes", lambda t: made.append(t.numel()) or real(t))
    parts = tensor_blobs.blob({"a": torch.ones(4), "b": torch.zeros(5)}).parts()
    next(parts)  # the header: sized without touching a tensor's bytes
    assert made == []
    next(parts)
    assert made == [4]
    next(parts)
    assert made == [4, 5]


def test_numpy_arrays_stream_to_the_librarys_bytes_and_read_back_in_place() -> None:
    """What a dataset is sent as: x float32 and y int64 class ids, laid out as safetensors.numpy.save lays them out
    (so a dataset's hash is the same whichever wrote it)."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    data = tensorfile.of_arrays({"x": x, "y": y}).joined()
    assert data == np_save({"x": x, "y": y})
    arrays = tensorfile.arrays(bytearray(data))
    assert np.array_equal(arrays["x"], x) and np.array_equal(arrays["y"], y)
    assert arrays["x"].flags.writeable


@pytest.mark.parametrize("corrupt", [b"", b"\x00" * 16, b"\xff" * 8 + b"{}", (8).to_bytes(8, "little") + b"[1,2,3] ",
                                     (56).to_bytes(8, "little")
                                     + b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}' + b"\x00" * 4,
                                     (56).to_bytes(8, "little")
                                     + b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}' + b"\x00" * 8])
def test_a_corrupt_file_is_a_decode_error(corrupt: bytes) -> None:
    with pytest.raises(DecodeError):
        tensor_blobs.load(corrupt)
    with pytest.raises(DecodeError):
        tensorfile.arrays(corrupt)


@pytest.mark.parametrize("n", [1, 7, 64, 1000])
def test_slices_are_the_blobs_bytes_in_runs_of_n(n: int) -> None:
    """Chunks cut across the parts (header, tensors) give back the blob exactly; a run inside one part is a view."""
    tensors = {"a": torch.randn(100), "b": torch.arange(37, dtype=torch.int64), "c": torch.ones(())}
    streamed = tensor_blobs.blob(tensors)
    runs = list(slices(streamed, n))
    assert all(len(r) == n for r in runs[:-1]) and 0 < len(runs[-1]) <= n
    assert b"".join(runs) == streamed.joined()


def test_slices_of_one_part_copy_nothing() -> None:
    data = bytearray(range(256)) * 4
    runs = list(slices(Streamed(len(data), lambda: iter((memoryview(data),))), 100))
    assert all(isinstance(r, memoryview) for r in runs) and b"".join(runs) == data


def test_shapes_come_from_the_header_alone() -> None:
    """Given a safetensors file's first bytes, `header_end` says when they hold the whole header and `shapes` reads
    each tensor's shape from them; a header cut short, or not JSON, is DecodeError."""
    data = save({"w1": torch.zeros(3, 4), "b": torch.zeros(7, dtype=torch.int64)}, metadata={"k": "v"})
    end = 8 + int.from_bytes(data[:8], "little")
    assert [tensorfile.header_end(data[:n]) for n in (0, 7, end - 1, end, len(data))] == [None, None, None, end, end]
    assert tensorfile.shapes(data[:end]) == {"w1": [3, 4], "b": [7]}
    for bad in (data[:end - 1], data[:8] + b"x" * (end - 8)):
        with pytest.raises(DecodeError):
            tensorfile.shapes(bad)
