/*
 * swr.storage._speedups: the common record of the byte storages decoded in C.
 *
 * The pure-Python decode in swr/storage/_record.py is the rule and the fallback (on
 * platforms without a compiler, or with SWR_PURE_PYTHON=1); this module makes the
 * same decision on the same bytes and builds the same entry, with none of the
 * interpreter's per-operation cost. tests/storage/test_speedups.py checks both
 * against each other on hostile and valid records.
 *
 * The common record (see RecordCodec.plain_max): magic b"SW", version 1, no flags,
 * four little-endian doubles (stored_at <= fresh_until <= stale_until <= expires_at,
 * no NaN, stored_at finite), an empty key check (length 0), the uncompressed marker
 * (0), then a msgpack payload. Anything else is left to the Python code.
 *
 * It also holds the read cache's admission: SeenKeys keeps the keys the rule of
 * ReadCache.wants has seen lately as hashes, and SeenKeys.admits follows that rule; and
 * unpackb, msgpack.unpackb's common case decoded with the keys of maps shared; and
 * PoolGet, PoolCache.get's hit and miss.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "../_slots.h"

#define PLAIN_SIZE 39 /* magic, version, flags, four doubles, key check length, marker */
#define TIMES_AT 4
#define TAIL_AT 36
#define MAX_EXTRA 8 /* slots besides the five fields, set to None */

#if PY_VERSION_HEX >= 0x030B0000
#define UNPACK_DOUBLE(p) PyFloat_Unpack8((const char *)(p), 1)
#define UNPACK_DOUBLE_BIG(p) PyFloat_Unpack8((const char *)(p), 0)
#else
#define UNPACK_DOUBLE(p) _PyFloat_Unpack8((const unsigned char *)(p), 1)
#define UNPACK_DOUBLE_BIG(p) _PyFloat_Unpack8((const unsigned char *)(p), 0)
#endif

/* unpackb: msgpack.unpackb's common case decoded here, with map keys shared.
 *
 * unpackb(data, ext_hook=..., strict_map_key=False) returns what msgpack.unpackb
 * returns for the same arguments, and raises what it raises: whatever this code does not
 * decode itself is handed to msgpack.unpackb, with the caller's arguments. Decoded here:
 * bytes holding exactly one object of nil, booleans, integers, floats, str, bin, arrays
 * and maps, nested at most MAX_NESTING deep, and the extension types other than -1 (the
 * timestamp) through ext_hook. Handed over: any other argument, a truncated or
 * malformed object, trailing bytes, invalid UTF-8, a key a dict refuses, an ext_hook
 * that raises (msgpack then calls it again and raises what it raises). Every length is
 * checked against the bytes left before anything is read or allocated: a list or a dict
 * is never sized beyond what the remaining bytes could hold.
 *
 * The difference that makes it faster: map keys. msgpack builds a new string for each
 * key of each map (and interns it); a document of 40 items with the same six keys
 * builds 240 strings and hashes each. Here short ASCII keys come from a small table
 * (KEY_SLOTS strings, two a hash of their bytes): a key seen before is the same
 * string, whose hash is already computed. ASCII strings are copied as they are. */

#define MAX_NESTING 32
#define KEY_BITS 10               /* 1,024 hashes */
#define KEY_SLOTS (2 << KEY_BITS) /* two strings each */
#define KEY_MAX 32                /* longer keys are built each time */

static PyObject *msgpack_unpackb; /* msgpack.unpackb: everything not decoded here */
static PyObject *key_table[KEY_SLOTS];
static PyObject *name_ext_hook, *name_strict_map_key;

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
    PyObject *ext_hook; /* borrowed; NULL: extension types are handed over */
} Reader;

static PyObject *read_object(Reader *r, int depth);

static inline uint64_t
big_endian(const unsigned char *p, int size)
{
    uint64_t value = 0;
    for (int i = 0; i < size; i++) {
        value = (value << 8) | p[i];
    }
    return value;
}

/* The next ``size`` bytes as a big-endian length, or -1 when fewer are left. */
static inline Py_ssize_t
read_length(Reader *r, int size)
{
    if (r->end - r->at < size) {
        return -1;
    }
    uint64_t value = big_endian(r->at, size);
    r->at += size;
    return (Py_ssize_t)value; /* at most 2**32 - 1 */
}

static inline uint64_t
load8(const unsigned char *p)
{
    uint64_t value;
    memcpy(&value, p, 8);
    return value;
}

static inline uint64_t
load4(const unsigned char *p)
{
    uint32_t value;
    memcpy(&value, p, 4);
    return value;
}

/* Whether ``p[0:n]`` is ASCII, eight bytes at a time. */
static inline int
is_ascii(const unsigned char *p, Py_ssize_t n)
{
    uint64_t bits = 0;
    Py_ssize_t i = 0;
    for (; i + 8 <= n; i += 8) {
        bits |= load8(p + i);
    }
    for (; i < n; i++) {
        bits |= p[i];
    }
    return (bits & 0x8080808080808080u) == 0;
}

static PyObject *
read_str(Reader *r, Py_ssize_t n)
{
    if (n < 0 || r->end - r->at < n) {
        return NULL;
    }
    PyObject *text;
    if (n > 1 && is_ascii(r->at, n)) { /* copied as is (one character: a shared string) */
        text = PyUnicode_New(n, 127);
        if (text != NULL) {
            memcpy(PyUnicode_DATA(text), r->at, n);
        }
    }
    else {
        text = PyUnicode_DecodeUTF8((const char *)r->at, n, NULL);
    }
    r->at += n;
    return text;
}

/* The first and last bytes of ``p[0:n]`` (n <= KEY_MAX) packed in a word each, in
 * loads that stay within the n bytes: what the key table hashes, and compares first. */
static inline void
key_words(const unsigned char *p, Py_ssize_t n, uint64_t *head, uint64_t *tail)
{
    if (n >= 8) {
        *head = load8(p);
        *tail = load8(p + n - 8);
    }
    else if (n >= 4) {
        *head = load4(p);
        *tail = load4(p + n - 4);
    }
    else {
        *head = n ? (uint64_t)p[0] | (uint64_t)p[n / 2] << 8 | (uint64_t)p[n - 1] << 16 : 0;
        *tail = 0;
    }
}

/* Whether the table's string ``held`` is the ``n`` bytes at ``p`` (whose key words are
 * ``head`` and ``tail``). */
static inline int
same_key(PyObject *held, const unsigned char *p, Py_ssize_t n, uint64_t head, uint64_t tail)
{
    if (held == NULL || PyUnicode_GET_LENGTH(held) != n) {
        return 0;
    }
    const unsigned char *known = PyUnicode_DATA(held);
    uint64_t known_head, known_tail;
    key_words(known, n, &known_head, &known_tail);
    return known_head == head && known_tail == tail &&
           (n <= 16 || memcmp(known + 8, p + 8, n - 16) == 0);
}

/* A map key of ``n`` bytes of UTF-8: from the key table when seen before. The table
 * has two slots a hash, chosen by the length and the first and last eight bytes; a new
 * key takes the first slot and moves its string to the second, dropping the second's.
 * Keys that differ only between those bytes share the slots (each still read right). */
static PyObject *
read_key_str(Reader *r, Py_ssize_t n)
{
    if (n > KEY_MAX || r->end - r->at < n) {
        return read_str(r, n);
    }
    const unsigned char *p = r->at;
    uint64_t head, tail;
    key_words(p, n, &head, &tail);
    uint64_t hash = (head * 0x9E3779B97F4A7C15u) ^ (tail * 0xC2B2AE3D27D4EB4Fu) ^ (uint64_t)n;
    hash ^= hash >> 29;
    hash *= 0xBF58476D1CE4E5B9u;
    PyObject **pair = &key_table[2 * (hash >> (64 - KEY_BITS))];
    for (int i = 0; i < 2; i++) {
        if (same_key(pair[i], p, n, head, tail)) {
            r->at += n;
            Py_INCREF(pair[i]);
            return pair[i];
        }
    }
    PyObject *key = read_str(r, n);
    if (key != NULL && PyUnicode_IS_ASCII(key)) { /* one byte a character: compared above */
        Py_XDECREF(pair[1]);
        pair[1] = pair[0];
        Py_INCREF(key);
        pair[0] = key;
    }
    return key;
}

static PyObject *
read_bin(Reader *r, Py_ssize_t n)
{
    if (n < 0 || r->end - r->at < n) {
        return NULL;
    }
    PyObject *data = PyBytes_FromStringAndSize((const char *)r->at, n);
    r->at += n;
    return data;
}

static PyObject *
read_ext(Reader *r, Py_ssize_t n)
{
    if (n < 0 || r->ext_hook == NULL || r->end - r->at < n + 1) {
        return NULL;
    }
    int code = (signed char)*r->at++;
    if (code == -1) { /* the timestamp: msgpack decodes it itself */
        return NULL;
    }
    PyObject *args[2] = {PyLong_FromLong(code), NULL};
    if (args[0] == NULL) {
        return NULL;
    }
    args[1] = PyBytes_FromStringAndSize((const char *)r->at, n);
    r->at += n;
    if (args[1] == NULL) {
        Py_DECREF(args[0]);
        return NULL;
    }
    PyObject *value = PyObject_Vectorcall(r->ext_hook, args, 2, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(args[1]);
    return value;
}

static PyObject *
read_array(Reader *r, Py_ssize_t n, int depth)
{
    /* Each item takes a byte at least. */
    if (n < 0 || depth >= MAX_NESTING || r->end - r->at < n) {
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = read_object(r, depth + 1);
        if (item == NULL) {
            Py_DECREF(list); /* the items not set yet are NULL */
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *
read_map(Reader *r, Py_ssize_t n, int depth)
{
    /* Each key and each value takes a byte at least. */
    if (n < 0 || depth >= MAX_NESTING || (r->end - r->at) / 2 < n) {
        return NULL;
    }
#if PY_VERSION_HEX < 0x030E0000
    PyObject *dict = n > 5 ? _PyDict_NewPresized(n) : PyDict_New();
#else
    PyObject *dict = PyDict_New();
#endif
    if (dict == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key;
        unsigned int tag = *r->at; /* a byte is left: checked above */
        if ((tag & 0xe0) == 0xa0) {
            r->at++;
            key = read_key_str(r, tag & 0x1f);
        }
        else if (tag == 0xd9 && r->end - r->at >= 2) { /* str 8 */
            Py_ssize_t size = r->at[1];
            r->at += 2;
            key = read_key_str(r, size);
        }
        else {
            key = read_object(r, depth + 1);
        }
        if (key == NULL) {
            Py_DECREF(dict);
            return NULL;
        }
        PyObject *value = r->at < r->end ? read_object(r, depth + 1) : NULL;
        if (value == NULL || PyDict_SetItem(dict, key, value) < 0) {
            Py_DECREF(key);
            Py_XDECREF(value);
            Py_DECREF(dict);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    return dict;
}

static PyObject *
read_object(Reader *r, int depth)
{
    if (r->at >= r->end) {
        return NULL;
    }
    unsigned int tag = *r->at++;
    if (tag <= 0x7f) {
        return PyLong_FromLong((long)tag);
    }
    if (tag >= 0xe0) {
        return PyLong_FromLong((long)(signed char)tag);
    }
    switch (tag & 0xf0) {
    case 0x80:
        return read_map(r, tag & 0x0f, depth);
    case 0x90:
        return read_array(r, tag & 0x0f, depth);
    case 0xa0:
    case 0xb0:
        return read_str(r, tag & 0x1f);
    }
    const unsigned char *p = r->at;
    switch (tag) {
    case 0xc0:
        Py_RETURN_NONE;
    case 0xc2:
        Py_RETURN_FALSE;
    case 0xc3:
        Py_RETURN_TRUE;
    case 0xc4:
        return read_bin(r, read_length(r, 1));
    case 0xc5:
        return read_bin(r, read_length(r, 2));
    case 0xc6:
        return read_bin(r, read_length(r, 4));
    case 0xc7:
        return read_ext(r, read_length(r, 1));
    case 0xc8:
        return read_ext(r, read_length(r, 2));
    case 0xc9:
        return read_ext(r, read_length(r, 4));
    case 0xd4:
        return read_ext(r, 1);
    case 0xd5:
        return read_ext(r, 2);
    case 0xd6:
        return read_ext(r, 4);
    case 0xd7:
        return read_ext(r, 8);
    case 0xd8:
        return read_ext(r, 16);
    case 0xd9:
        return read_str(r, read_length(r, 1));
    case 0xda:
        return read_str(r, read_length(r, 2));
    case 0xdb:
        return read_str(r, read_length(r, 4));
    case 0xdc:
        return read_array(r, read_length(r, 2), depth);
    case 0xdd:
        return read_array(r, read_length(r, 4), depth);
    case 0xde:
        return read_map(r, read_length(r, 2), depth);
    case 0xdf:
        return read_map(r, read_length(r, 4), depth);
    }
    /* Numbers of a fixed size: 1 << (tag & 3) bytes. */
    int size = 1 << (tag & 3);
    if (tag < 0xca || tag > 0xd3 || r->end - p < size) {
        return NULL; /* 0xc1, never used; or truncated */
    }
    r->at += size;
    uint64_t bits = big_endian(p, size);
    switch (tag) {
    case 0xca: {
#if PY_VERSION_HEX >= 0x030B0000
        double value = PyFloat_Unpack4((const char *)p, 0);
#else
        double value = _PyFloat_Unpack4(p, 0);
#endif
        return value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
    }
    case 0xcb: {
        double value = UNPACK_DOUBLE_BIG(p);
        return value == -1.0 && PyErr_Occurred() ? NULL : PyFloat_FromDouble(value);
    }
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        return PyLong_FromUnsignedLongLong(bits);
    case 0xd0:
        return PyLong_FromLong((long)(int8_t)bits);
    case 0xd1:
        return PyLong_FromLong((long)(int16_t)bits);
    case 0xd2:
        return PyLong_FromLong((long)(int32_t)bits);
    default: /* 0xd3 */
        return PyLong_FromLongLong((long long)(int64_t)bits);
    }
}

/* The object ``p[0:n]`` holds, decoded here; NULL with ``*handed`` set for bytes left
 * to msgpack.unpackb (no error set), NULL with an error that is not an Exception
 * (KeyboardInterrupt from an ext hook) otherwise. */
static PyObject *
unpack_common(const unsigned char *p, Py_ssize_t n, PyObject *ext_hook, int *handed)
{
    Reader r = {p, p + n, ext_hook == Py_None ? NULL : ext_hook};
    PyObject *value = read_object(&r, 0);
    *handed = 0;
    if (value != NULL && r.at == r.end) {
        return value;
    }
    Py_XDECREF(value);
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return NULL;
        }
        PyErr_Clear();
    }
    *handed = 1;
    return NULL;
}

/* unpackb(data, /, **options): see above. */
static PyObject *
speedups_unpackb(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *ext_hook = NULL;
    int common = nargs == 1 && PyBytes_CheckExact(args[0]), loose = 0;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; common && i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *value = args[nargs + i];
        if (name == name_ext_hook ||
            (name != name_strict_map_key && PyUnicode_Compare(name, name_ext_hook) == 0)) {
            ext_hook = value;
        }
        else if (name == name_strict_map_key ||
                 PyUnicode_Compare(name, name_strict_map_key) == 0) {
            loose = value == Py_False; /* msgpack's default (True) checks the keys */
        }
        else {
            common = 0;
        }
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    if (common && loose) {
        int handed;
        PyObject *value =
            unpack_common((const unsigned char *)PyBytes_AS_STRING(args[0]),
                          PyBytes_GET_SIZE(args[0]), ext_hook, &handed);
        if (!handed) {
            return value;
        }
    }
    return PyObject_Vectorcall(msgpack_unpackb, args, nargs, kwnames);
}

static const char *const FIELDS[5] = {
    "value", "stored_at", "fresh_until", "stale_until", "expires_at"};

typedef struct {
    PyObject_HEAD
    PyObject *unpackb;        /* msgpack.unpackb */
    PyObject *ext_hook;       /* the serializer's ext hook */
    PyObject *kwnames;        /* ("ext_hook", "strict_map_key") */
    PyObject *factory;        /* called with the five fields when no slots are known */
    PyTypeObject *entry_type; /* else built slot by slot (a new reference) */
    Py_ssize_t offsets[5];
    Py_ssize_t extra[MAX_EXTRA];
    Py_ssize_t n_extra;
    Py_ssize_t max_size; /* the longest record decoded here */
    int direct;          /* unpackb is this module's: its common case is called directly */
} PlainDecoder;

static int
PlainDecoder_init(PlainDecoder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"unpackb", "ext_hook", "max_size", "factory", "none_slots", NULL};
    PyObject *unpackb, *ext_hook, *factory, *none_slots;
    Py_ssize_t max_size;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOnOO:PlainDecoder", kwlist, &unpackb,
                                     &ext_hook, &max_size, &factory, &none_slots)) {
        return -1;
    }
    if (self->unpackb != NULL) {
        /* A decode may be running on another thread with these very fields. */
        PyErr_SetString(PyExc_TypeError, "PlainDecoder is already initialized");
        return -1;
    }
    if (!PyCallable_Check(unpackb) || !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "unpackb and factory must be callable");
        return -1;
    }
    PyTypeObject *entry_type = NULL;
    Py_ssize_t n_extra = 0;
    if (none_slots != Py_None) {
        /* Built slot by slot: the caller vouches that factory(value, *times) sets the
         * five fields and these other slots to None, and nothing more. */
        if (!PyType_Check(factory) || !PyTuple_Check(none_slots)) {
            PyErr_SetString(PyExc_TypeError,
                            "none_slots needs a class as factory and a tuple of names");
            return -1;
        }
        n_extra = PyTuple_GET_SIZE(none_slots);
        if (n_extra > MAX_EXTRA) {
            PyErr_SetString(PyExc_ValueError, "too many none_slots");
            return -1;
        }
        entry_type = (PyTypeObject *)factory;
        if (entry_type->tp_new != PyBaseObject_Type.tp_new ||
            entry_type->tp_alloc == NULL) {
            PyErr_Format(PyExc_TypeError, "%s has its own __new__", entry_type->tp_name);
            return -1;
        }
    }
    Py_ssize_t offsets[5] = {0, 0, 0, 0, 0};
    Py_ssize_t extra[MAX_EXTRA] = {0};
    for (int i = 0; entry_type != NULL && i < 5; i++) {
        if ((offsets[i] = slot_offset(entry_type, FIELDS[i])) < 0) {
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < n_extra; i++) {
        PyObject *name = PyTuple_GET_ITEM(none_slots, i);
        const char *text = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        if (text == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_TypeError, "none_slots must hold str");
            }
            return -1;
        }
        if ((extra[i] = slot_offset(entry_type, text)) < 0) {
            return -1;
        }
    }
    /* Interned, as the names in compiled Python code are: msgpack's argument parser
     * matches keywords by identity first, and compares their text only when that fails
     * (about 200 instructions a call). */
    PyObject *kwnames = PyTuple_Pack(2, name_ext_hook, name_strict_map_key); /* interned */
    if (kwnames == NULL) {
        return -1;
    }
    Py_INCREF(unpackb);
    Py_INCREF(ext_hook);
    Py_INCREF(factory);
    Py_XINCREF(entry_type);
    Py_XSETREF(self->unpackb, unpackb);
    Py_XSETREF(self->ext_hook, ext_hook);
    Py_XSETREF(self->factory, factory);
    Py_XSETREF(self->entry_type, entry_type);
    Py_XSETREF(self->kwnames, kwnames);
    memcpy(self->offsets, offsets, sizeof(offsets));
    memcpy(self->extra, extra, sizeof(extra));
    self->n_extra = n_extra;
    self->max_size = max_size;
    self->direct = PyCFunction_Check(unpackb) &&
                   PyCFunction_GET_FUNCTION(unpackb) == (PyCFunction)(void (*)(void))speedups_unpackb;
    return 0;
}

static int
PlainDecoder_traverse(PlainDecoder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->unpackb);
    Py_VISIT(self->ext_hook);
    Py_VISIT(self->factory);
    Py_VISIT(self->entry_type);
    return 0;
}

static int
PlainDecoder_clear(PlainDecoder *self)
{
    Py_CLEAR(self->unpackb);
    Py_CLEAR(self->ext_hook);
    Py_CLEAR(self->kwnames);
    Py_CLEAR(self->factory);
    Py_CLEAR(self->entry_type);
    return 0;
}

static void
PlainDecoder_dealloc(PlainDecoder *self)
{
    PyObject_GC_UnTrack(self);
    PlainDecoder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Store ``value`` (a new reference, stolen) in the empty slot at ``offset`` of ``obj``. */
static inline void
set_slot(PyObject *obj, Py_ssize_t offset, PyObject *value)
{
    *(PyObject **)((char *)obj + offset) = value;
}

/* The entry of the common record ``data`` (its expires_at in ``*expires``), None for
 * any other bytes, or NULL with an error. The decoder is initialized. */
static PyObject *
decode_record(PlainDecoder *self, PyObject *data, double *expires)
{
    if (!PyBytes_CheckExact(data)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    if (size < PLAIN_SIZE || size > self->max_size) {
        Py_RETURN_NONE;
    }
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    if (bytes[0] != 'S' || bytes[1] != 'W' || bytes[2] != 1 || bytes[3] != 0 ||
        bytes[TAIL_AT] != 0 || bytes[TAIL_AT + 1] != 0 || bytes[TAIL_AT + 2] != 0) {
        Py_RETURN_NONE;
    }
    double times[4];
    for (int i = 0; i < 4; i++) {
        times[i] = UNPACK_DOUBLE(bytes + TIMES_AT + 8 * i);
        if (times[i] == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
    }
    /* As the Python test is written: NaN fails every comparison, so it is refused. */
    if (!(-INFINITY < times[0] && times[0] <= times[1] && times[1] <= times[2] &&
          times[2] <= times[3] && times[0] < INFINITY)) {
        Py_RETURN_NONE;
    }
    PyObject *value = NULL;
    int handed = 1;
    if (self->direct) { /* decoded in place: no copy of the payload */
        value = unpack_common(bytes + PLAIN_SIZE, size - PLAIN_SIZE, self->ext_hook, &handed);
        if (value == NULL && !handed) {
            return NULL;
        }
    }
    if (handed) {
        PyObject *payload =
            PyBytes_FromStringAndSize((const char *)bytes + PLAIN_SIZE, size - PLAIN_SIZE);
        if (payload == NULL) {
            return NULL;
        }
        PyObject *call[3] = {payload, self->ext_hook, Py_False};
        value = PyObject_Vectorcall(self->direct ? msgpack_unpackb : self->unpackb, call, 1,
                                    self->kwnames);
        Py_DECREF(payload);
        if (value == NULL) {
            /* What `except Exception` catches: the Python code gives the verdict. */
            if (PyErr_ExceptionMatches(PyExc_Exception)) {
                PyErr_Clear();
                Py_RETURN_NONE;
            }
            return NULL;
        }
    }
    *expires = times[3];
    PyObject *fields[5] = {value, NULL, NULL, NULL, NULL};
    for (int i = 0; i < 4; i++) {
        if ((fields[i + 1] = PyFloat_FromDouble(times[i])) == NULL) {
            for (int j = 0; j <= i; j++) {
                Py_DECREF(fields[j]);
            }
            return NULL;
        }
    }
    if (self->entry_type == NULL) {
        PyObject *entry = PyObject_Vectorcall(self->factory, fields, 5, NULL);
        for (int i = 0; i < 5; i++) {
            Py_DECREF(fields[i]);
        }
        return entry;
    }
    PyObject *entry = self->entry_type->tp_alloc(self->entry_type, 0);
    if (entry == NULL) {
        for (int i = 0; i < 5; i++) {
            Py_DECREF(fields[i]);
        }
        return NULL;
    }
    for (int i = 0; i < 5; i++) {
        set_slot(entry, self->offsets[i], fields[i]);
    }
    for (Py_ssize_t i = 0; i < self->n_extra; i++) {
        Py_INCREF(Py_None);
        set_slot(entry, self->extra[i], Py_None);
    }
    return entry;
}

static PyObject *
PlainDecoder_decode(PlainDecoder *self, PyObject *data)
{
    if (self->unpackb == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PlainDecoder is not initialized");
        return NULL;
    }
    double expires;
    return decode_record(self, data, &expires);
}

/* Append the int ``index`` to ``list``; -1 with an error. */
static int
append_index(PyObject *list, Py_ssize_t index)
{
    PyObject *number = PyLong_FromSsize_t(index);
    if (number == NULL) {
        return -1;
    }
    int failed = PyList_Append(list, number);
    Py_DECREF(number);
    return failed;
}

/* The expires_at of ``entry`` (a float attribute), or -1.0 with an error set. */
static double
expires_of(PyObject *entry)
{
    static PyObject *name = NULL;
    if (name == NULL && (name = PyUnicode_InternFromString("expires_at")) == NULL) {
        return -1.0;
    }
    PyObject *value = PyObject_GetAttr(entry, name);
    if (value == NULL) {
        return -1.0;
    }
    double expires = PyFloat_AsDouble(value);
    Py_DECREF(value);
    return expires;
}

/* SeenKeys: the keys a read cache decoded lately and did not keep, held as their hashes.
 *
 * A Python set of those keys keeps the key strings alive (thousands of them, built
 * fresh by each call that reads): the allocations that follow then land in cold,
 * scattered memory instead of reusing what a read just freed. This table holds the
 * hashes alone, in one block: linear probing, kept at most half full, removal by
 * shifting the following run back (no tombstones). Two keys with the same hash count
 * as one: the cost is a key admitted a read early. Speaks the part of the set protocol
 * the read cache uses: ``in``, ``len``, ``add``, ``discard``, ``clear``. */
typedef struct {
    PyObject_HEAD
    Py_hash_t *slots; /* 0: empty */
    size_t mask;      /* the number of slots, less one (a power of two) */
    Py_ssize_t used;
    Py_ssize_t span;  /* the most hashes held (see ReadCache.wants) */
    PyObject *items;  /* the read cache's dict, for admits(); NULL without one */
    Py_ssize_t room;  /* below this many items, admits() keeps every key */
} SeenKeys;

static PyTypeObject SeenKeysType;

/* The hash ``key`` is held under (never 0), or -1 with an error set. */
static Py_hash_t
held_hash(PyObject *key)
{
    Py_hash_t hash = PyObject_Hash(key);
    return hash == 0 ? 1 : hash;
}

/* The slot holding ``hash``, or the empty slot that ends its run (mask + 1 never). */
static size_t
seen_slot(SeenKeys *self, Py_hash_t hash)
{
    size_t at = (size_t)hash & self->mask;
    while (self->slots[at] != 0 && self->slots[at] != hash) {
        at = (at + 1) & self->mask;
    }
    return at;
}

/* Empty slot ``hole``, then move back each hash of the run after it whose probe from its
 * home slot passes the hole, so that every hash stays reachable. */
static void
seen_remove(SeenKeys *self, size_t hole)
{
    size_t mask = self->mask;
    self->slots[hole] = 0;
    self->used--;
    for (size_t at = (hole + 1) & mask; self->slots[at] != 0; at = (at + 1) & mask) {
        size_t home = (size_t)self->slots[at] & mask;
        if (((at - home) & mask) >= ((at - hole) & mask)) {
            self->slots[hole] = self->slots[at];
            self->slots[at] = 0;
            hole = at;
        }
    }
}

/* Double the table (0, or -1 with MemoryError). */
static int
seen_grow(SeenKeys *self)
{
    size_t old_size = self->mask + 1, size = old_size * 2;
    Py_hash_t *old = self->slots;
    Py_hash_t *slots = PyMem_Calloc(size, sizeof(Py_hash_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->slots = slots;
    self->mask = size - 1;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i] != 0) {
            slots[seen_slot(self, old[i])] = old[i];
        }
    }
    PyMem_Free(old);
    return 0;
}

/* Hold ``hash`` (0, or -1 with an error). */
static int
seen_insert(SeenKeys *self, Py_hash_t hash)
{
    size_t at = seen_slot(self, hash);
    if (self->slots[at] == hash) {
        return 0;
    }
    if ((size_t)(self->used + 1) * 2 > self->mask + 1) {
        if (seen_grow(self) < 0) {
            return -1;
        }
        at = seen_slot(self, hash);
    }
    self->slots[at] = hash;
    self->used++;
    return 0;
}

static void
seen_clear(SeenKeys *self)
{
    memset(self->slots, 0, (self->mask + 1) * sizeof(Py_hash_t));
    self->used = 0;
}

static int
SeenKeys_init(SeenKeys *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"span", "items", "room", NULL};
    Py_ssize_t span, room = 0;
    PyObject *items = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|O!n:SeenKeys", kwlist, &span, &PyDict_Type,
                                     &items, &room)) {
        return -1;
    }
    if (span < 0) {
        PyErr_SetString(PyExc_ValueError, "span must be >= 0");
        return -1;
    }
    if (room < 0) {
        PyErr_SetString(PyExc_ValueError, "room must be >= 0");
        return -1;
    }
    size_t size = 8;
    while (size < (size_t)span * 2 && size < ((size_t)1 << 40)) {
        size *= 2;
    }
    Py_hash_t *slots = PyMem_Calloc(size, sizeof(Py_hash_t));
    if (slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(self->slots);
    self->slots = slots;
    self->mask = size - 1;
    self->used = 0;
    self->span = span;
    self->room = room;
    Py_XINCREF(items);
    Py_XSETREF(self->items, items);
    return 0;
}

static int
SeenKeys_traverse(SeenKeys *self, visitproc visit, void *arg)
{
    Py_VISIT(self->items);
    return 0;
}

static int
SeenKeys_clear_refs(SeenKeys *self)
{
    Py_CLEAR(self->items);
    return 0;
}

static void
SeenKeys_dealloc(SeenKeys *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->items);
    PyMem_Free(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* The hash ``key`` is held under, or -1 with an error (also when not initialized). */
static Py_hash_t
seen_hash(SeenKeys *self, PyObject *key)
{
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "SeenKeys is not initialized");
        return -1;
    }
    return held_hash(key);
}

/* 1 if ``key`` is held, 0 if not, -1 with an error. */
static int
SeenKeys_contains(SeenKeys *self, PyObject *key)
{
    Py_hash_t hash = seen_hash(self, key);
    if (hash == -1) {
        return -1;
    }
    return self->slots[seen_slot(self, hash)] == hash;
}

static Py_ssize_t
SeenKeys_len(SeenKeys *self)
{
    return self->used;
}

static PyObject *
SeenKeys_add(SeenKeys *self, PyObject *key)
{
    Py_hash_t hash = seen_hash(self, key);
    if (hash == -1 || seen_insert(self, hash) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
SeenKeys_discard(SeenKeys *self, PyObject *key)
{
    Py_hash_t hash = seen_hash(self, key);
    if (hash == -1) {
        return NULL;
    }
    size_t at = seen_slot(self, hash);
    if (self->slots[at] == hash) {
        seen_remove(self, at);
    }
    Py_RETURN_NONE;
}

static PyObject *
SeenKeys_clear_method(SeenKeys *self, PyObject *unused)
{
    if (self->slots != NULL) {
        seen_clear(self);
    }
    Py_RETURN_NONE;
}

static int seen_keys_again(SeenKeys *self, Py_ssize_t span, PyObject *key);

/* admits(key): ReadCache.wants for the cache whose items and room this was made with. */
static PyObject *
SeenKeys_admits(SeenKeys *self, PyObject *key)
{
    if (self->items == NULL) {
        PyErr_SetString(PyExc_TypeError, "admits() needs a SeenKeys made with a cache's items");
        return NULL;
    }
    if (PyDict_GET_SIZE(self->items) < self->room) {
        Py_RETURN_TRUE;
    }
    int again = seen_keys_again(self, self->span, key);
    return again < 0 ? NULL : PyBool_FromLong(again);
}

static PyMethodDef SeenKeys_methods[] = {
    {"admits", (PyCFunction)SeenKeys_admits, METH_O,
     "admits(key) -> bool: whether the read cache keeps the record of key just decoded "
     "(ReadCache.wants)."},
    {"add", (PyCFunction)SeenKeys_add, METH_O, "add(key): hold the hash of key."},
    {"discard", (PyCFunction)SeenKeys_discard, METH_O,
     "discard(key): let go of the hash of key, if held."},
    {"clear", (PyCFunction)SeenKeys_clear_method, METH_NOARGS, "clear(): hold nothing."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods SeenKeys_as_sequence = {
    .sq_length = (lenfunc)SeenKeys_len,
    .sq_contains = (objobjproc)SeenKeys_contains,
};

static PyTypeObject SeenKeysType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swr.storage._speedups.SeenKeys",
    .tp_doc = PyDoc_STR("SeenKeys(span, items=None, room=0): the hashes of keys a read cache "
                        "decoded lately; with the cache's items, its admission (admits)."),
    .tp_basicsize = sizeof(SeenKeys),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)SeenKeys_traverse,
    .tp_clear = (inquiry)SeenKeys_clear_refs,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)SeenKeys_init,
    .tp_dealloc = (destructor)SeenKeys_dealloc,
    .tp_methods = SeenKeys_methods,
    .tp_as_sequence = &SeenKeys_as_sequence,
};

/* ReadCache.wants on a SeenKeys: 1 keep, 0 not, -1 an error. */
static int
seen_keys_again(SeenKeys *self, Py_ssize_t span, PyObject *key)
{
    Py_hash_t hash = seen_hash(self, key);
    if (hash == -1) {
        return -1;
    }
    size_t at = seen_slot(self, hash);
    if (self->slots[at] == hash) {
        seen_remove(self, at);
        return 1;
    }
    if (self->used >= span) {
        seen_clear(self);
    }
    return seen_insert(self, hash);
}

/* Whether to keep a decoded record of ``key`` once the read cache is full: the rule
 * of ReadCache.wants on its set of keys ``seen`` (1 keep, 0 not, -1 an error). */
static int
seen_again(PyObject *seen, Py_ssize_t span, PyObject *key)
{
    if (Py_IS_TYPE(seen, &SeenKeysType)) {
        return seen_keys_again((SeenKeys *)seen, span, key);
    }
    int found = PySet_Contains(seen, key);
    if (found != 0) {
        return found < 0 ? -1 : (PySet_Discard(seen, key) < 0 ? -1 : 1);
    }
    if (PySet_GET_SIZE(seen) >= span && PySet_Clear(seen) < 0) {
        return -1;
    }
    return PySet_Add(seen, key) < 0 ? -1 : 0;
}

/* decode_batch: see RecordCodec._plain_batch, the rule this follows step by step. */
static PyObject *
PlainDecoder_decode_batch(PlainDecoder *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (self->unpackb == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PlainDecoder is not initialized");
        return NULL;
    }
    if (nargs != 6) {
        PyErr_Format(PyExc_TypeError,
                     "decode_batch() takes 6 arguments (keys, records, known, now, seen, "
                     "span), got %zd",
                     nargs);
        return NULL;
    }
    PyObject *keys = args[0], *records = args[1], *known = args[2], *seen = args[4];
    if (!PyList_CheckExact(keys) || !PyList_CheckExact(records) || !PyDict_CheckExact(known)) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_batch() takes a list of keys, a list of records and a dict");
        return NULL;
    }
    if (seen != Py_None && !PySet_CheckExact(seen) && !Py_IS_TYPE(seen, &SeenKeysType)) {
        PyErr_SetString(PyExc_TypeError,
                        "decode_batch() takes a set or None as seen (or a SeenKeys)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[3]);
    if (now == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t span = PyLong_AsSsize_t(args[5]);
    if (span == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(records);
    if (PyList_GET_SIZE(keys) != count) {
        PyErr_Format(PyExc_ValueError, "decode_batch() got %zd keys for %zd records",
                     PyList_GET_SIZE(keys), count);
        return NULL;
    }
    PyObject *entries = PyList_New(count);
    PyObject *keep = PyList_New(0);
    PyObject *rest = PyList_New(0);
    if (entries == NULL || keep == NULL || rest == NULL) {
        goto failed;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(entries, i, Py_None);
    }
    /* The lists are the caller's own: code a hook or factory runs meanwhile does not
     * change them; their items are read by index each time all the same. */
    for (Py_ssize_t i = 0; i < count && i < PyList_GET_SIZE(records) &&
                           i < PyList_GET_SIZE(keys);
         i++) {
        PyObject *data = PyList_GET_ITEM(records, i);
        if (data == Py_None) {
            continue;
        }
        PyObject *key = PyList_GET_ITEM(keys, i);
        Py_INCREF(data);
        Py_INCREF(key);
        PyObject *cached = PyDict_GetItemWithError(known, key); /* borrowed */
        if (cached == NULL && PyErr_Occurred()) {
            goto failed_in_loop;
        }
        int was_known = cached != NULL;
        if (cached != NULL && PyTuple_CheckExact(cached) && PyTuple_GET_SIZE(cached) == 2) {
            PyObject *held = PyTuple_GET_ITEM(cached, 0);
            int same = held == data;
            if (!same && PyBytes_CheckExact(held) && PyBytes_CheckExact(data)) {
                same = PyBytes_GET_SIZE(held) == PyBytes_GET_SIZE(data) &&
                       memcmp(PyBytes_AS_STRING(held), PyBytes_AS_STRING(data),
                              PyBytes_GET_SIZE(data)) == 0;
            }
            if (same) {
                PyObject *hit = PyTuple_GET_ITEM(cached, 1);
                Py_INCREF(hit);
                double expires = expires_of(hit);
                if (expires == -1.0 && PyErr_Occurred()) {
                    Py_DECREF(hit);
                    goto failed_in_loop;
                }
                if (expires > now) {
                    PyList_SetItem(entries, i, hit); /* steals hit, drops the None */
                }
                else {
                    Py_DECREF(hit);
                }
                Py_DECREF(data);
                Py_DECREF(key);
                continue;
            }
        }
        double expires = 0.0;
        PyObject *entry = decode_record(self, data, &expires);
        Py_DECREF(data);
        if (entry == NULL) {
            Py_DECREF(key);
            goto failed;
        }
        int kept = 0;
        if (entry == Py_None) { /* not the common record: decode() gives the verdict */
            Py_DECREF(entry);
            kept = append_index(rest, i);
        }
        else if (expires <= now) {
            Py_DECREF(entry);
        }
        else {
            PyList_SetItem(entries, i, entry); /* steals entry */
            if (expires == DBL_MAX) { /* a window written finite: the caller restores it */
                kept = append_index(rest, i);
            }
            else if (seen == Py_None || was_known ||
                     (kept = seen_again(seen, span, key)) == 1) {
                kept = append_index(keep, i);
            }
        }
        Py_DECREF(key);
        if (kept < 0) {
            goto failed;
        }
        continue;
    failed_in_loop:
        Py_DECREF(data);
        Py_DECREF(key);
        goto failed;
    }
    PyObject *result = PyTuple_Pack(3, entries, keep, rest);
    Py_DECREF(entries);
    Py_DECREF(keep);
    Py_DECREF(rest);
    return result;
failed:
    Py_XDECREF(entries);
    Py_XDECREF(keep);
    Py_XDECREF(rest);
    return NULL;
}

static PyMethodDef PlainDecoder_methods[] = {
    {"decode", (PyCFunction)PlainDecoder_decode, METH_O,
     "decode(data) -> entry or None: the entry of a common record, None for any other."},
    {"decode_batch", (PyCFunction)(void (*)(void))PlainDecoder_decode_batch, METH_FASTCALL,
     "decode_batch(keys, records, known, now, seen, span) -> (entries, keep, rest): "
     "see RecordCodec._plain_batch."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef PlainDecoder_members[] = {
    {"max_size", T_PYSSIZET, offsetof(PlainDecoder, max_size), READONLY,
     "The longest record decoded here."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject PlainDecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swr.storage._speedups.PlainDecoder",
    .tp_doc = PyDoc_STR("Decodes the common record of the byte storages (see RecordCodec)."),
    .tp_basicsize = sizeof(PlainDecoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PlainDecoder_init,
    .tp_dealloc = (destructor)PlainDecoder_dealloc,
    .tp_traverse = (traverseproc)PlainDecoder_traverse,
    .tp_clear = (inquiry)PlainDecoder_clear,
    .tp_methods = PlainDecoder_methods,
    .tp_members = PlainDecoder_members,
};

/* PoolGet: PoolCache.get's two common cases in C, a live hit and a plain miss.
 *
 * Applied to the Python method ``get`` in its class's body (a decorator), it becomes
 * that class's ``get``; __set_name__ then finds the slots it reads. Called as the
 * method, it does what ``get`` does when the key is found live (mark it read, count a
 * hit, return the value) or absent from an open cache (count a miss, return None),
 * reading the same slots in the same order. Every other case (an item that may have
 * expired, a closed cache, a slot of an unexpected type, an object of another class)
 * is ``get``'s own call, which decides it again from the start. A clock slot holding
 * ``wall`` (time.time) is read with clock_gettime, without a float object; any other
 * clock is called. */

enum { PG_HINT, PG_DATA, PG_MARKED, PG_HITS, PG_MISSES, PG_CLOSED, PG_NOW, PG_SLOTS };
static const char *const POOL_SLOTS[PG_SLOTS] = {
    "_hint", "_data", "_marked", "_hits", "_misses", "_closed", "_now_read"};

typedef struct {
    WRAPPER_HEAD /* wrapped: PoolCache.get */
    Py_ssize_t offsets[PG_SLOTS];
    vectorcallfunc vectorcall;
} PoolGet;

static PyObject *
PoolGet_vectorcall(PoolGet *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) != 2 || kwnames != NULL || self->owner == NULL ||
        !PyObject_TypeCheck(args[0], self->owner)) {
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    PyObject *cache = args[0], *key = args[1];
    const Py_ssize_t *at = self->offsets;
    PyObject *hint = SLOT(cache, at[PG_HINT]);
    PyObject *data = SLOT(cache, at[PG_DATA]);
    if (hint == NULL || !PyFloat_CheckExact(hint) || data == NULL || !PyDict_Check(data)) {
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    /* Read before the lookup, as a value: see PoolCache.get for why it may stand for
     * the item's own deadline. */
    double hint_at = PyFloat_AS_DOUBLE(hint);
    PyObject *item = PyDict_GetItemWithError(data, key); /* borrowed */
    if (item == NULL) {
        if (PyErr_Occurred()) {
            return NULL; /* unhashable: the lookup's own TypeError */
        }
        PyObject *misses = SLOT(cache, at[PG_MISSES]);
        if (SLOT(cache, at[PG_CLOSED]) != Py_False || misses == NULL ||
            Py_TYPE(misses)->tp_iternext == NULL) {
            return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
        }
        PyObject *count = Py_TYPE(misses)->tp_iternext(misses);
        if (count == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetNone(PyExc_StopIteration);
            }
            return NULL;
        }
        Py_DECREF(count);
        Py_RETURN_NONE;
    }
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    Py_INCREF(item); /* a clock, a key's __hash__ or __eq__ may run Python code */
    if (hint_at != Py_HUGE_VAL) {
        PyObject *now_read = SLOT(cache, at[PG_NOW]);
        double now;
        if (now_read == NULL) {
            goto call_get;
        }
        if (now_read != self->wall || wall_now(&now) < 0) {
            PyObject *read = PyObject_CallNoArgs(now_read);
            if (read == NULL) {
                Py_DECREF(item);
                return NULL;
            }
            now = PyFloat_AsDouble(read);
            Py_DECREF(read);
            if (now == -1.0 && PyErr_Occurred()) {
                goto call_get; /* not a number: get compares it as it is */
            }
        }
        if (hint_at <= now) {
            PyObject *deadline = PyTuple_GET_ITEM(item, 1);
            if (!PyFloat_CheckExact(deadline) || PyFloat_AS_DOUBLE(deadline) <= now) {
                goto call_get; /* expired, most likely: get removes it */
            }
        }
    }
    PyObject *marked = SLOT(cache, at[PG_MARKED]);
    PyObject *hits = SLOT(cache, at[PG_HITS]);
    if (marked == NULL || !PySet_Check(marked) || hits == NULL ||
        Py_TYPE(hits)->tp_iternext == NULL) {
        goto call_get;
    }
    if (PySet_Add(marked, key) < 0) {
        Py_DECREF(item);
        return NULL;
    }
    PyObject *count = Py_TYPE(hits)->tp_iternext(hits);
    if (count == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetNone(PyExc_StopIteration);
        }
        Py_DECREF(item);
        return NULL;
    }
    Py_DECREF(count);
    PyObject *value = PyTuple_GET_ITEM(item, 0);
    Py_INCREF(value);
    Py_DECREF(item);
    return value;

call_get:
    PyErr_Clear();
    Py_DECREF(item);
    return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
}

static PyObject *
PoolGet_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"get", "wall", NULL};
    PyObject *get, *wall;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:PoolGet", kwlist, &get, &wall)) {
        return NULL;
    }
    PoolGet *self = (PoolGet *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (wrapper_init((Wrapper *)self, get, wall) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    self->vectorcall = (vectorcallfunc)PoolGet_vectorcall;
    return (PyObject *)self;
}

static PyObject *
PoolGet_set_name(PoolGet *self, PyObject *const *args, Py_ssize_t nargs)
{
    return wrapper_set_owner((Wrapper *)self, args, nargs, POOL_SLOTS, PG_SLOTS, self->offsets);
}

static int
PoolGet_traverse(PoolGet *self, visitproc visit, void *arg)
{
    return wrapper_traverse((Wrapper *)self, visit, arg);
}

static int
PoolGet_clear(PoolGet *self)
{
    wrapper_clear((Wrapper *)self);
    return 0;
}

static void
PoolGet_dealloc(PoolGet *self)
{
    PyObject_GC_UnTrack(self);
    PoolGet_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef PoolGet_methods[] = {
    {"__set_name__", (PyCFunction)(void (*)(void))PoolGet_set_name, METH_FASTCALL,
     "Find the slots of the class the method is defined in."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PoolGetType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swr.storage._speedups.PoolGet",
    .tp_basicsize = sizeof(PoolGet),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(PoolGet, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = wrapper_descr_get,
    .tp_new = PoolGet_new,
    .tp_dealloc = (destructor)PoolGet_dealloc,
    .tp_traverse = (traverseproc)PoolGet_traverse,
    .tp_clear = (inquiry)PoolGet_clear,
    .tp_methods = PoolGet_methods,
    .tp_members = wrapper_members,
    .tp_getset = wrapper_getset,
};

static PyMethodDef speedups_functions[] = {
    {"unpackb", (PyCFunction)(void (*)(void))speedups_unpackb, METH_FASTCALL | METH_KEYWORDS,
     "unpackb(data, /, **options): msgpack.unpackb, its common case decoded in C with the "
     "keys of maps shared (everything else is msgpack.unpackb's)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "swr.storage._speedups",
    .m_doc = "The common record of the byte storages decoded in C, and the read cache's "
             "admission (optional).",
    .m_size = -1,
    .m_methods = speedups_functions,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&PlainDecoderType) < 0 || PyType_Ready(&SeenKeysType) < 0 ||
        PyType_Ready(&PoolGetType) < 0) {
        return NULL;
    }
    PyObject *msgpack = PyImport_ImportModule("msgpack");
    if (msgpack == NULL) {
        return NULL;
    }
    msgpack_unpackb = PyObject_GetAttrString(msgpack, "unpackb");
    Py_DECREF(msgpack);
    if (msgpack_unpackb == NULL) {
        return NULL;
    }
    if ((name_ext_hook = PyUnicode_InternFromString("ext_hook")) == NULL ||
        (name_strict_map_key = PyUnicode_InternFromString("strict_map_key")) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&PlainDecoderType);
    if (PyModule_AddObject(module, "PlainDecoder", (PyObject *)&PlainDecoderType) < 0) {
        Py_DECREF(&PlainDecoderType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&SeenKeysType);
    if (PyModule_AddObject(module, "SeenKeys", (PyObject *)&SeenKeysType) < 0) {
        Py_DECREF(&SeenKeysType);
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&PoolGetType);
    if (PyModule_AddObject(module, "PoolGet", (PyObject *)&PoolGetType) < 0) {
        Py_DECREF(&PoolGetType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
