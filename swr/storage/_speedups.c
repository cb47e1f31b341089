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
 * It also holds the read cache's admission in C: wants() follows ReadCache.wants, and
 * SeenKeys keeps the keys that rule has seen lately as hashes (see there).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <float.h>
#include <math.h>
#include <string.h>

#define PLAIN_SIZE 39 /* magic, version, flags, four doubles, key check length, marker */
#define TIMES_AT 4
#define TAIL_AT 36
#define MAX_EXTRA 8 /* slots besides the five fields, set to None */

#if PY_VERSION_HEX >= 0x030B0000
#define UNPACK_DOUBLE(p) PyFloat_Unpack8((const char *)(p), 1)
#else
#define UNPACK_DOUBLE(p) _PyFloat_Unpack8((const unsigned char *)(p), 1)
#endif

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
} PlainDecoder;

/* The offset of the writable object slot ``name`` of ``type``, or -1 with an error. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
            return -1;
        }
        PyErr_Clear();
    }
    Py_ssize_t offset = -1;
    /* A slot of the class or of a base (never a descriptor borrowed from elsewhere,
     * whose offset would be another layout's). */
    if (descr != NULL && Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
        PyType_IsSubtype(type, ((PyDescrObject *)descr)->d_type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) {
            offset = member->offset;
        }
    }
    Py_XDECREF(descr);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a writable slot", type->tp_name, name);
    }
    return offset;
}

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
    PyObject *ext_hook_name = PyUnicode_InternFromString("ext_hook");
    PyObject *strict_name = PyUnicode_InternFromString("strict_map_key");
    PyObject *kwnames = NULL;
    if (ext_hook_name != NULL && strict_name != NULL) {
        kwnames = PyTuple_Pack(2, ext_hook_name, strict_name);
    }
    Py_XDECREF(ext_hook_name);
    Py_XDECREF(strict_name);
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
    PyObject *payload =
        PyBytes_FromStringAndSize((const char *)bytes + PLAIN_SIZE, size - PLAIN_SIZE);
    if (payload == NULL) {
        return NULL;
    }
    PyObject *call[3] = {payload, self->ext_hook, Py_False};
    PyObject *value = PyObject_Vectorcall(self->unpackb, call, 1, self->kwnames);
    Py_DECREF(payload);
    if (value == NULL) {
        /* What `except Exception` catches: the Python code gives the verdict. */
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        return NULL;
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
    static char *kwlist[] = {"span", NULL};
    Py_ssize_t span;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:SeenKeys", kwlist, &span)) {
        return -1;
    }
    if (span < 0) {
        PyErr_SetString(PyExc_ValueError, "span must be >= 0");
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
    return 0;
}

static void
SeenKeys_dealloc(SeenKeys *self)
{
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

static PyMethodDef SeenKeys_methods[] = {
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
    .tp_doc = PyDoc_STR("SeenKeys(span): the hashes of keys a read cache decoded lately."),
    .tp_basicsize = sizeof(SeenKeys),
    .tp_flags = Py_TPFLAGS_DEFAULT,
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

/* The names wants() reads from a read cache, interned once. */
static PyObject *name_items, *name_room, *name_seen, *name_span;

/* The Py_ssize_t attribute ``name`` of ``obj``; -1 with an error set. */
static Py_ssize_t
size_attr(PyObject *obj, PyObject *name)
{
    PyObject *value = PyObject_GetAttr(obj, name);
    if (value == NULL) {
        return -1;
    }
    Py_ssize_t size = PyLong_AsSsize_t(value);
    Py_DECREF(value);
    return size;
}

/* wants(cache, key): ReadCache.wants in C, the rule it follows, on the cache's items,
 * room, seen and span. */
static PyObject *
speedups_wants(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "wants() takes 2 arguments (cache, key), got %zd", nargs);
        return NULL;
    }
    PyObject *cache = args[0], *key = args[1];
    PyObject *items = PyObject_GetAttr(cache, name_items);
    if (items == NULL) {
        return NULL;
    }
    Py_ssize_t held = PyObject_Size(items);
    Py_DECREF(items);
    if (held < 0) {
        return NULL;
    }
    Py_ssize_t room = size_attr(cache, name_room);
    if (room == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (held < room) {
        Py_RETURN_TRUE;
    }
    Py_ssize_t span = size_attr(cache, name_span);
    if (span == -1 && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *seen = PyObject_GetAttr(cache, name_seen);
    if (seen == NULL) {
        return NULL;
    }
    if (!PySet_Check(seen) && !Py_IS_TYPE(seen, &SeenKeysType)) {
        Py_DECREF(seen);
        PyErr_SetString(PyExc_TypeError, "wants() takes a cache whose seen is a set or SeenKeys");
        return NULL;
    }
    int again = seen_again(seen, span, key);
    Py_DECREF(seen);
    if (again < 0) {
        return NULL;
    }
    return PyBool_FromLong(again);
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

static PyMethodDef speedups_functions[] = {
    {"wants", (PyCFunction)(void (*)(void))speedups_wants, METH_FASTCALL,
     "wants(cache, key) -> bool: ReadCache.wants(cache, key), in C."},
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
    if (PyType_Ready(&PlainDecoderType) < 0 || PyType_Ready(&SeenKeysType) < 0) {
        return NULL;
    }
    if ((name_items = PyUnicode_InternFromString("items")) == NULL ||
        (name_room = PyUnicode_InternFromString("room")) == NULL ||
        (name_seen = PyUnicode_InternFromString("seen")) == NULL ||
        (name_span = PyUnicode_InternFromString("span")) == NULL) {
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
    return module;
}
