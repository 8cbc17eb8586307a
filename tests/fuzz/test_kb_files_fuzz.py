"""The files a knowledge base is opened from, fed arbitrary bytes: each is refused with an error naming it, or loaded;
no other exception, nothing executed (vectors.npy is read with allow_pickle=False)."""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from test_readers_fuzz import any_bytes, any_json_document

from ragtune.data.errors import DataFormatError
from ragtune.rag.kb_files import CHUNK_FIELDS, KnowledgeBaseError, read_info, read_rows
from ragtune.rag.vectors import LocalVectors


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


npy_like = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"\x93NUMPY\x01\x00" + b),
    st.sampled_from(
        [
            _npy(np.zeros((2, 4), np.float32)),  # the right shape and dtype: loads
            _npy(np.zeros((3, 4), np.float32)),  # one row too many
            _npy(np.zeros((2, 4), np.float64)),  # another dtype
            _npy(np.array([{"a": 1}], dtype=object)),  # an object array: would need pickle
            pickle.dumps({"not": "an array"}),
        ]
    ),
)


@given(data=npy_like)
def test_vectors_npy_loads_or_is_refused_by_name(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vectors.npy"
        path.write_bytes(data)
        try:
            vectors = LocalVectors.load(path, ["a", "b"], dim=4)
        except DataFormatError as e:
            assert str(e).startswith(str(path)), str(e)
        else:
            assert vectors.matrix.shape == (2, 4) and vectors.search(np.ones(4, np.float32), 1)


@given(data=any_json_document)
def test_kb_json_loads_or_is_refused_by_name(data):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kb.json").write_bytes(data)
        try:
            read_info(Path(tmp))
        except (DataFormatError, KnowledgeBaseError) as e:
            assert str(Path(tmp)) in str(e), str(e)


@given(data=any_bytes)
def test_chunks_jsonl_rows_load_or_name_file_and_line(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunks.jsonl"
        path.write_bytes(data)
        try:
            rows = read_rows(path, CHUNK_FIELDS)
        except DataFormatError as e:
            assert str(e).startswith(str(path)) and e.line is not None, str(e)
        else:
            assert all(isinstance(r["start"], int) and isinstance(r["text"], str) for r in rows)
