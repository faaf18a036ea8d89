"""A small GGUF v3 writer for tests (Python standard library only).

It is written independently of the C writer so that tests can check the C
reader against a second producer. Values are typed explicitly with the
constants below, or inferred: str -> STRING, bool -> BOOL, int -> INT32
(UINT64/INT64 when out of range), float -> FLOAT32, list -> ARRAY.

    w = GGUFWriter()
    w.add("general.architecture", "llama")
    w.add("llama.block_count", 2, UINT32)
    w.add("tokenizer.ggml.tokens", ["a", "b"])
    w.add("tokenizer.ggml.scores", [0.0, -1.0], (ARRAY, FLOAT32))
    w.add_tensor("x", GGML_F32, [4], struct.pack("<4f", 1, 2, 3, 4))
    w.write("model.gguf")
"""
import struct

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_SCALAR_FMT = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
               FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types: id -> (name, block size, bytes per block)
GGML_F32, GGML_F16, GGML_Q4_0, GGML_Q4_1 = 0, 1, 2, 3
GGML_Q5_0, GGML_Q5_1, GGML_Q8_0, GGML_Q8_1 = 6, 7, 8, 9
GGML_Q2_K, GGML_Q3_K, GGML_Q4_K, GGML_Q5_K, GGML_Q6_K, GGML_Q8_K = 10, 11, 12, 13, 14, 15
GGML_I8, GGML_I16, GGML_I32, GGML_I64, GGML_F64, GGML_BF16 = 24, 25, 26, 27, 28, 30
GGML_TYPES = {
    GGML_F32: ("F32", 1, 4), GGML_F16: ("F16", 1, 2), GGML_Q4_0: ("Q4_0", 32, 18),
    GGML_Q4_1: ("Q4_1", 32, 20), GGML_Q5_0: ("Q5_0", 32, 22), GGML_Q5_1: ("Q5_1", 32, 24),
    GGML_Q8_0: ("Q8_0", 32, 34), GGML_Q8_1: ("Q8_1", 32, 40), GGML_Q2_K: ("Q2_K", 256, 84),
    GGML_Q3_K: ("Q3_K", 256, 110), GGML_Q4_K: ("Q4_K", 256, 144), GGML_Q5_K: ("Q5_K", 256, 176),
    GGML_Q6_K: ("Q6_K", 256, 210), GGML_Q8_K: ("Q8_K", 256, 292), GGML_I8: ("I8", 1, 1),
    GGML_I16: ("I16", 1, 2), GGML_I32: ("I32", 1, 4), GGML_I64: ("I64", 1, 8),
    GGML_F64: ("F64", 1, 8), GGML_BF16: ("BF16", 1, 2),
}


def tensor_nbytes(ggml_type, dims):
    """Bytes of a tensor of this type and shape (dims[0] innermost)."""
    _, block, size = GGML_TYPES[ggml_type]
    n = 1
    for d in dims:
        n *= d
    if dims[0] % block:
        raise ValueError("row length %d is not a multiple of block size %d" % (dims[0], block))
    return n // block * size


def _infer(value):
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        if -2**31 <= value < 2**31:
            return INT32
        return UINT64 if value >= 0 else INT64
    if isinstance(value, float):
        return FLOAT32
    if isinstance(value, (str, bytes)):
        return STRING
    if isinstance(value, (list, tuple)):
        return ARRAY
    raise TypeError("cannot infer a GGUF type for %r" % (value,))


def _string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _value(value, vtype):
    """Encodes value; vtype is a type id or (ARRAY, element type spec)."""
    if isinstance(vtype, tuple):
        elem = vtype[1]
        elem_id = elem[0] if isinstance(elem, tuple) else elem
        return (struct.pack("<IQ", elem_id, len(value)) +
                b"".join(_value(v, elem) for v in value))
    if vtype == ARRAY:
        elem = _infer(value[0]) if value else UINT8
        return _value(value, (ARRAY, elem))
    if vtype == STRING:
        return _string(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


class GGUFWriter:
    def __init__(self, alignment=32, version=3):
        self.alignment = alignment
        self.version = version
        self.kv = []        # (key, encoded type id + value)
        self.tensors = []   # (name, type, dims, data)
        if alignment != 32:
            self.add("general.alignment", alignment, UINT32)

    def add(self, key, value, vtype=None):
        vtype = _infer(value) if vtype is None else vtype
        type_id = vtype[0] if isinstance(vtype, tuple) else vtype
        self.kv.append((key, struct.pack("<I", type_id) + _value(value, vtype)))

    def add_raw(self, key, type_id, payload):
        """Adds a value from raw bytes (for crafting invalid files)."""
        self.kv.append((key, struct.pack("<I", type_id) + payload))

    def add_tensor(self, name, ggml_type, dims, data=None):
        n = tensor_nbytes(ggml_type, dims)
        if data is None:
            data = bytes(i % 251 for i in range(n))
        if len(data) != n:
            raise ValueError("tensor %s needs %d bytes, got %d" % (name, n, len(data)))
        self.tensors.append((name, ggml_type, list(dims), bytes(data)))

    def to_bytes(self):
        a = self.alignment
        out = bytearray(b"GGUF" + struct.pack("<IQQ", self.version, len(self.tensors), len(self.kv)))
        for key, payload in self.kv:
            out += _string(key) + payload
        offset = 0
        offsets = []
        for name, ggml_type, dims, data in self.tensors:
            offsets.append(offset)
            out += _string(name) + struct.pack("<I", len(dims))
            out += b"".join(struct.pack("<Q", d) for d in dims)
            out += struct.pack("<IQ", ggml_type, offset)
            offset = (offset + len(data) + a - 1) // a * a
        if self.tensors:
            out += bytes(-len(out) % a)
            for (_, _, _, data), off in zip(self.tensors, offsets):
                out += data + bytes(-len(data) % a)
        return bytes(out)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())
