"""Serialisation: round trips, zero-copy layout, reference hooks, errors."""

import collections
import dataclasses
import mmap
import os
import struct
import threading

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lineagerun.exceptions import SerializationError
from lineagerun.objects.serialization import (
    BUFFER_ALIGNMENT_BYTES,
    FORMAT_VERSION,
    deserialize_from,
    loads_bytes,
    serialize,
)


def roundtrip(value, **kwargs):
    return loads_bytes(serialize(value).to_bytes(), **kwargs)


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


@dataclasses.dataclass(frozen=True)
class Frame:
    name: str
    data: np.ndarray


class Ref:
    """Stands in for the runtime's ObjectRef."""

    def __init__(self, object_id: bytes):
        self.object_id = object_id


@pytest.mark.parametrize("value", [
    0, -1, 2**100, 3.5, float("inf"), True, None, "", "héllo", b"\x00\xff" * 10, bytearray(b"xy"),
    [1, [2, [3]]], (1, "a", None), {"a": {"b": [1, 2]}, 3: (4,)}, {1, 2, 3}, frozenset({"x"}),
    collections.OrderedDict(a=1), complex(1, 2), range(5), slice(1, 9, 2),
], ids=repr)
def test_builtin_values_round_trip(value):
    assert roundtrip(value) == value


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.linspace(0, 1, 7, dtype=np.float32),
    np.array([True, False, True]),
    np.arange(6, dtype=np.uint8).reshape(1, 2, 3),
    np.array([1 + 2j, 3 - 4j], dtype=np.complex128),
    np.array(["ab", "cde"]),
    np.array([(1, 2.0)], dtype=[("a", "i4"), ("b", "f8")]),
    np.array(["2026-01-01"], dtype="datetime64[D]"),
    np.zeros((0, 5), dtype=np.float64),
    np.array(42.0),  # 0-d
    np.asfortranarray(np.arange(20, dtype=np.int16).reshape(4, 5)),
    np.arange(100, dtype=np.float64).reshape(10, 10)[::3, 1::2],  # non-contiguous
    np.arange(10)[::-1],  # negative stride
    np.array([{"a": 1}, None], dtype=object),
], ids=lambda a: f"{a.dtype}-{a.shape}-{'C' if a.flags.c_contiguous else 'F' if a.flags.f_contiguous else 'strided'}")
def test_numpy_arrays_round_trip_with_dtype_and_shape(array):
    result = roundtrip(array)
    assert result.dtype == array.dtype and result.shape == array.shape
    np.testing.assert_array_equal(result, array)


def test_numpy_arrays_come_out_read_only():
    result = roundtrip(np.arange(10))
    assert not result.flags.writeable
    with pytest.raises(ValueError):
        result[0] = 1


def test_numpy_data_travels_out_of_band_not_in_the_pickle():
    array = np.arange(100_000, dtype=np.int64)
    serialized = serialize(array)
    assert len(serialized.metadata) < 1000
    assert [b.nbytes for b in serialized.buffers] == [array.nbytes]


def test_pyarrow_array_round_trips():
    array = pa.array([1, None, 3], type=pa.int64())
    assert roundtrip(array).equals(array)


def test_pyarrow_table_round_trips():
    table = pa.table({"x": [1, 2, 3], "s": ["a", None, "c"], "f": [0.5, 1.5, 2.5]})
    assert roundtrip(table).equals(table)


def test_pyarrow_buffers_are_read_zero_copy_from_the_region():
    table = pa.table({"x": np.arange(1000, dtype=np.int64)})
    serialized = serialize(table)
    region = mmap.mmap(-1, serialized.total_bytes)
    serialized.write_into(region)
    result = deserialize_from(region)
    column_buffer = result.column("x").chunk(0).buffers()[1]
    base = np.frombuffer(region, dtype=np.uint8)
    start = base.ctypes.data
    assert start <= column_buffer.address < start + serialized.total_bytes


def test_user_class_defined_in_a_test_round_trips():
    assert roundtrip(Point(1, [2])) == Point(1, [2])


def test_dataclass_with_array_round_trips():
    result = roundtrip(Frame("f", np.ones(3)))
    assert result.name == "f" and np.array_equal(result.data, np.ones(3))


def test_local_class_and_lambda_round_trip_by_value():
    class Local:
        factor = 3

    offset = 10
    result_cls, result_fn = roundtrip((Local, lambda x: x * Local.factor + offset))
    assert result_cls.factor == 3 and result_fn(2) == 16


def test_buffers_are_aligned_in_an_aligned_region():
    value = [np.arange(3, dtype=np.int8), np.arange(5, dtype=np.float64), b"x", np.arange(7, dtype=np.int32)]
    serialized = serialize(value)
    region = mmap.mmap(-1, serialized.total_bytes)  # page aligned
    serialized.write_into(region)
    result = deserialize_from(region)
    for array in (result[0], result[1], result[3]):
        assert array.ctypes.data % BUFFER_ALIGNMENT_BYTES == 0


def test_result_arrays_point_into_the_region():
    serialized = serialize(np.arange(1000, dtype=np.float64))
    region = mmap.mmap(-1, serialized.total_bytes)
    serialized.write_into(region)
    result = deserialize_from(region)
    assert np.shares_memory(result, np.frombuffer(region, dtype=np.uint8))


def test_arrays_are_read_only_even_from_a_writable_region():
    serialized = serialize(np.arange(4))
    region = bytearray(serialized.total_bytes)
    serialized.write_into(region)
    assert not deserialize_from(region).flags.writeable


def test_nested_references_are_recorded_and_rebuilt_by_the_hooks():
    value = {"a": Ref(b"\x01" * 28), "b": [Ref(b"\x02" * 28), 5]}
    serialized = serialize(value, ref_to_id=lambda obj: obj.object_id if isinstance(obj, Ref) else None)
    assert serialized.contained_ids == (b"\x01" * 28, b"\x02" * 28)
    result = loads_bytes(serialized.to_bytes(), id_to_ref=lambda oid: ("ref", oid))
    assert result == {"a": ("ref", b"\x01" * 28), "b": [("ref", b"\x02" * 28), 5]}


def test_reading_references_without_a_hook_is_a_clear_error():
    data = serialize([Ref(b"\x07" * 4)], ref_to_id=lambda o: o.object_id if isinstance(o, Ref) else None).to_bytes()
    with pytest.raises(SerializationError, match="reference to object 07070707.*id_to_ref"):
        loads_bytes(data)


def test_lock_is_refused_with_its_path_and_type():
    with pytest.raises(SerializationError) as info:
        serialize({"state": [1, threading.Lock()]})
    message = str(info.value)
    assert "value['state'][1] is a _thread.lock" in message
    assert "create them inside the task or actor" in message


def test_generator_is_refused_naming_its_type():
    with pytest.raises(SerializationError, match="type generator"):
        serialize(x for x in range(3))


def test_attribute_holding_a_lock_is_named():
    with pytest.raises(SerializationError, match=r"value\.y is a _thread\.lock"):
        serialize(Point(1, threading.Lock()))


def test_serialization_error_is_also_a_type_error():
    with pytest.raises(TypeError):
        serialize(threading.Lock())


def test_truncated_region_is_a_clear_error():
    data = serialize(np.arange(100)).to_bytes()
    with pytest.raises(SerializationError, match="outside the region"):
        loads_bytes(data[:-8])


def test_garbage_is_a_clear_error():
    with pytest.raises(SerializationError, match="bad magic"):
        loads_bytes(b"x" * 64)
    with pytest.raises(SerializationError, match="shorter than the header"):
        loads_bytes(b"LRO5")


def test_other_format_version_is_refused():
    data = bytearray(serialize(1).to_bytes())
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    with pytest.raises(SerializationError, match="same lineagerun version"):
        loads_bytes(bytes(data))


def test_corrupt_pickle_is_a_serialization_error():
    data = bytearray(serialize("hello world").to_bytes())
    data[-3:] = b"\xff\xff\xff"
    with pytest.raises(SerializationError, match="could not deserialise"):
        loads_bytes(bytes(data))


def test_write_into_a_too_small_buffer_is_refused():
    with pytest.raises(SerializationError, match="needs"):
        serialize(np.arange(10)).write_into(bytearray(10))


def test_write_to_fd_lays_out_the_same_bytes_as_write_into(tmp_path):
    serialized = serialize({"a": np.arange(10), "b": pa.array([1, 2]), "c": "text"})
    path = tmp_path / "object"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, serialized.total_bytes)
        assert serialized.write_to_fd(fd) == serialized.total_bytes
    finally:
        os.close(fd)
    assert path.read_bytes() == serialized.to_bytes()


_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.binary(max_size=20),
    hnp.arrays(dtype=st.sampled_from([np.int8, np.int64, np.float32, np.float64, np.bool_]),
               shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)),
)
_values = st.recursive(_leaves, lambda children: st.one_of(
    st.lists(children, max_size=4), st.tuples(children, children),
    st.dictionaries(st.text(max_size=5), children, max_size=4)), max_leaves=12)


def _assert_same(result, expected):
    if isinstance(expected, np.ndarray):
        assert isinstance(result, np.ndarray) and result.dtype == expected.dtype
        np.testing.assert_array_equal(result, expected)
    elif isinstance(expected, (list, tuple)):
        assert type(result) is type(expected) and len(result) == len(expected)
        for r, e in zip(result, expected):
            _assert_same(r, e)
    elif isinstance(expected, dict):
        assert result.keys() == expected.keys()
        for key in expected:
            _assert_same(result[key], expected[key])
    else:
        assert result == expected and type(result) is type(expected)


@settings(max_examples=150, deadline=None)
@given(_values)
def test_random_nested_values_round_trip(value):
    _assert_same(roundtrip(value), value)
