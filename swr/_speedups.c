/*
 * swr._speedups: StaleEngine.execute's common answers in C (optional).
 *
 * ``execute`` is written in Python (swr/_async/engine.py, made sync by tools/unasync.py)
 * and stays the rule. EngineHit wraps the sync one, applied in the class body as a
 * decorator (swr._engine.hit_path); __set_name__ finds the slots it reads. A call
 * ``engine.execute(key, fetch)``, with or without a ``ttl``, on a non-empty str key
 * reads the entry with the engine's lookup and touch, and answers as execute does a
 * fresh entry (the hit counted, the hook told, the read sampled; the entry's shared
 * Result, made on its first hit) and a stale one whose refresh already runs, with no
 * circuit breaker and no hook counting stale answers. The rest is Python's: before
 * the read (other arguments, hooks of another kind, a read without lookup), execute
 * itself; after it (a miss, any other entry no longer fresh), the tail execute shares,
 * ``_after_read``; a failing read is reported by ``_read_failed`` and read as a miss,
 * as execute does. The asyncio engine's coroutine asks ``probe`` to read first.
 * tests/swr/test_engine_hit.py holds the two paths to the same answers, counts and
 * calls; CI runs the suite again with SWR_PURE_PYTHON=1, where execute is the Python
 * method.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include "_slots.h"

enum {
    E_HIT_OBS, E_LOOKUP, E_TOUCH, E_PREFIX, E_NOW, E_HITS, E_CLOCK, E_OBS, E_STALES, E_BREAKER,
    E_PENDING, E_SLOTS
};
static const char *const ENGINE_SLOTS[E_SLOTS] = {
    "_hit_obs", "_lookup", "_touch", "_prefix", "_now_read", "_hit_numbers", "_clock", "_obs",
    "_stale_numbers", "_breaker", "_pending"};
enum { C_VALUE, C_STORED_AT, C_FRESH_UNTIL, C_STALE_UNTIL, C_HIT, C_STALE, C_SLOTS };
static const char *const ENTRY_SLOTS[C_SLOTS] = {"value", "stored_at", "fresh_until",
                                                 "stale_until", "hit", "stale"};
enum { O_HIT, O_STALE, O_SAMPLING, O_SLOTS };
static const char *const OBSERVED_SLOTS[O_SLOTS] = {"hit", "stale", "sampling"};
enum { R_VALUE, R_STATUS, R_STORED_AT, R_CLOCK, R_SLOTS };
static const char *const RESULT_SLOTS[R_SLOTS] = {"value", "status", "stored_at", "_clock"};

static PyObject *name_after_read, *name_read_failed, *name_timed_lookup, *name_ttl,
    *name_value, *name_stored_at, *name_fresh_until;

typedef struct {
    WRAPPER_HEAD                /* wrapped: StaleEngine.execute */
    PyTypeObject *entry_type;   /* CachedEntry: read and given its Result by slot */
    PyTypeObject *result_type;  /* Result */
    PyObject *hit, *stale;      /* Status.HIT, Status.STALE */
    PyTypeObject *observed;     /* Observed: what the engine reports to its hook */
    PyTypeObject *ttl_type;     /* CacheTTL: a ttl given to one call */
    Py_ssize_t engine[E_SLOTS];
    Py_ssize_t entry[C_SLOTS];
    Py_ssize_t result[R_SLOTS];
    Py_ssize_t obs[O_SLOTS];
    vectorcallfunc vectorcall;
} EngineHit;

/* ``engine._after_read(key, skey, fetch, ttl, False, entry, now)``: execute's tail. */
static PyObject *
after_read(PyObject *engine, PyObject *key, PyObject *skey, PyObject *fetch, PyObject *ttl,
           PyObject *entry, PyObject *now)
{
    PyObject *args[8] = {engine, key, skey, fetch, ttl, Py_False, entry, now};
    return PyObject_VectorcallMethod(name_after_read, args,
                                     8 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* The Result answering ``entry`` with ``status`` (HIT or STALE; a new reference), or NULL
 * with an error. A CachedEntry keeps it in its slot ``kept`` (C_HIT or C_STALE): later
 * answers share it. */
static PyObject *
answer(EngineHit *self, PyObject *engine, PyObject *entry, PyObject *status, int kept)
{
    int cached = Py_IS_TYPE(entry, self->entry_type);
    if (cached) {
        PyObject *result = SLOT(entry, self->entry[kept]);
        if (result != NULL && result != Py_None) {
            Py_INCREF(result); /* made on an earlier hit: shared */
            return result;
        }
    }
    PyObject *clock = SLOT(engine, self->engine[E_CLOCK]);
    if (clock == NULL) {
        clock = Py_None;
    }
    if (cached) {
        PyObject *value = SLOT(entry, self->entry[C_VALUE]);
        PyObject *stored_at = SLOT(entry, self->entry[C_STORED_AT]);
        if (value == NULL || stored_at == NULL) {
            PyErr_SetString(PyExc_AttributeError, "entry has no value or stored_at");
            return NULL;
        }
        /* Result(value, status, stored_at, clock), slot by slot, as execute builds it. */
        PyObject *result = self->result_type->tp_alloc(self->result_type, 0);
        if (result == NULL) {
            return NULL;
        }
        PyObject *fields[R_SLOTS] = {value, status, stored_at, clock};
        for (int i = 0; i < R_SLOTS; i++) {
            Py_INCREF(fields[i]);
            SLOT(result, self->result[i]) = fields[i];
        }
        Py_INCREF(result);
        Py_XSETREF(SLOT(entry, self->entry[kept]), result);
        return result;
    }
    PyObject *value = PyObject_GetAttr(entry, name_value);
    if (value == NULL) {
        return NULL;
    }
    PyObject *stored_at = PyObject_GetAttr(entry, name_stored_at);
    if (stored_at == NULL) {
        Py_DECREF(value);
        return NULL;
    }
    PyObject *args[4] = {value, status, stored_at, clock};
    PyObject *result = PyObject_Vectorcall((PyObject *)self->result_type, args, 4, NULL);
    Py_DECREF(value);
    Py_DECREF(stored_at);
    return result;
}

/* Whether ``entry`` is fresh at ``now`` (1, 0), or -1 with an error; ``now_obj``, when
 * given, is the clock's reading that is not a float (then compared as Python does). */
static int
is_fresh(EngineHit *self, PyObject *entry, double now, PyObject *now_obj)
{
    PyObject *until = NULL;
    if (Py_IS_TYPE(entry, self->entry_type)) {
        until = SLOT(entry, self->entry[C_FRESH_UNTIL]); /* by slot: a CachedEntry */
        Py_XINCREF(until);
    }
    if (until == NULL && (until = PyObject_GetAttr(entry, name_fresh_until)) == NULL) {
        return -1;
    }
    int fresh;
    if (now_obj == NULL && PyFloat_CheckExact(until)) {
        fresh = now < PyFloat_AS_DOUBLE(until);
    }
    else {
        PyObject *at = now_obj != NULL ? (Py_INCREF(now_obj), now_obj) : PyFloat_FromDouble(now);
        fresh = at == NULL ? -1 : PyObject_RichCompareBool(at, until, Py_LT);
        Py_XDECREF(at);
    }
    Py_DECREF(until);
    return fresh;
}

/* Report the exception being raised (an Exception) with engine._read_failed(skey, exc):
 * 0, or -1 with the error to raise instead. */
static int
report_read_failure(PyObject *engine, PyObject *skey)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback != NULL && value != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    PyObject *args[3] = {engine, skey, value != NULL ? value : Py_None};
    PyObject *done = PyObject_VectorcallMethod(name_read_failed, args,
                                               3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (done == NULL) {
        return -1;
    }
    Py_DECREF(done);
    return 0;
}

/* Count an answer on the engine's counter ``counter`` (an itertools.count): its number
 * (a new reference), or NULL with an error. */
static PyObject *
count_answer(PyObject *engine, Py_ssize_t offset)
{
    PyObject *counter = SLOT(engine, offset);
    if (counter == NULL || Py_TYPE(counter)->tp_iternext == NULL) {
        PyErr_SetString(PyExc_TypeError, "the engine's answer counter is not an iterator");
        return NULL;
    }
    PyObject *number = Py_TYPE(counter)->tp_iternext(counter);
    if (number == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return number;
}

/* What execute reports of a hit to the engine's hook (``obs``, an Observed): its
 * ``hit`` called, and every ``sampling``-th hit (by ``number``) the next read timed
 * (``_lookup`` becomes ``_timed_lookup``). 0, or -1 with an error. */
static int
report_hit(EngineHit *self, PyObject *engine, PyObject *obs, PyObject *number)
{
    PyObject *hook = SLOT(obs, self->obs[O_HIT]);
    if (hook != NULL && hook != Py_None) {
        Py_INCREF(hook);
        PyObject *done = PyObject_CallNoArgs(hook);
        Py_DECREF(hook);
        if (done == NULL) {
            return -1;
        }
        Py_DECREF(done);
    }
    PyObject *sampling = SLOT(obs, self->obs[O_SAMPLING]);
    if (sampling == NULL || !PyLong_CheckExact(sampling)) {
        return 0;
    }
    long long every = PyLong_AsLongLong(sampling);
    long long n = PyLong_AsLongLong(number);
    if ((every == -1 || n == -1) && PyErr_Occurred()) {
        return -1;
    }
    if (every <= 0 || n % every != 0) {
        return 0;
    }
    PyObject *timed = PyObject_GetAttr(engine, name_timed_lookup);
    if (timed == NULL) {
        return -1;
    }
    Py_XSETREF(SLOT(engine, self->engine[E_LOOKUP]), timed); /* for one read */
    return 0;
}

/* Whether execute would serve the CachedEntry ``entry``, no longer fresh at ``now``, as
 * STALE with nothing else to do: stale still, no circuit breaker, the key's refresh
 * already queued or running, and no hook counting stale answers (1, 0; -1 with an
 * error). Every other case is _serve_stale's, in Python. */
static int
serves_stale(EngineHit *self, PyObject *engine, PyObject *entry, PyObject *skey, double now)
{
    const Py_ssize_t *at = self->engine;
    if (!Py_IS_TYPE(entry, self->entry_type)) {
        return 0;
    }
    PyObject *until = SLOT(entry, self->entry[C_STALE_UNTIL]);
    PyObject *obs = SLOT(engine, at[E_OBS]);
    PyObject *pending = SLOT(engine, at[E_PENDING]);
    if (until == NULL || !PyFloat_CheckExact(until) || !(now < PyFloat_AS_DOUBLE(until)) ||
        SLOT(engine, at[E_BREAKER]) != Py_None || obs == NULL ||
        !Py_IS_TYPE(obs, self->observed) || SLOT(obs, self->obs[O_STALE]) != Py_None ||
        pending == NULL || !PyAnySet_Check(pending)) {
        return 0;
    }
    return PySet_Contains(pending, skey);
}

static PyObject *not_read; /* read_and_answer's "take the Python path, nothing read" */

/* execute(key, fetch, ttl) of ``engine`` (an instance of the owner class; ``ttl`` valid)
 * up to its answer: the Result of a fresh hit or of a stale entry served as is;
 * ``not_read`` (a new reference) when the call is not for this path (nothing read yet);
 * else, after the read, what _after_read(key, skey, fetch, ttl, False, entry, now)
 * answers, or with ``probe`` the tuple (skey, entry, now) for the caller to give it.
 * NULL with an error. */
static PyObject *
read_and_answer(EngineHit *self, PyObject *engine, PyObject *key, PyObject *fetch,
                PyObject *ttl, int probe)
{
    if (!PyUnicode_CheckExact(key) || PyUnicode_GET_LENGTH(key) == 0) {
        Py_INCREF(not_read);
        return not_read;
    }
    const Py_ssize_t *at = self->engine;
    PyObject *lookup = SLOT(engine, at[E_LOOKUP]);
    PyObject *prefix = SLOT(engine, at[E_PREFIX]);
    PyObject *hit_obs = SLOT(engine, at[E_HIT_OBS]);
    if ((hit_obs != Py_None && !Py_IS_TYPE(hit_obs, self->observed)) || lookup == NULL ||
        lookup == Py_None || prefix == NULL || !PyUnicode_CheckExact(prefix)) {
        Py_INCREF(not_read);
        return not_read;
    }
    PyObject *skey = PyUnicode_Concat(prefix, key);
    if (skey == NULL) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_INCREF(lookup); /* the read may run any code, which may swap the engine's slots */
    PyObject *entry = PyObject_Vectorcall(lookup, &skey, 1, NULL);
    Py_DECREF(lookup);
    if (entry == NULL) {
        /* As execute: a KeyError reads as a miss, any other Exception is reported and
         * reads as a miss, anything else (an interrupt) is raised. */
        if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
        }
        else if (!PyErr_ExceptionMatches(PyExc_Exception) ||
                 report_read_failure(engine, skey) < 0) {
            goto done;
        }
        Py_INCREF(Py_None);
        entry = Py_None;
    }
    PyObject *touch = SLOT(engine, at[E_TOUCH]);
    if (entry != Py_None && touch != NULL && touch != Py_None) {
        Py_INCREF(touch);
        PyObject *touched = PyObject_Vectorcall(touch, &skey, 1, NULL);
        Py_DECREF(touch);
        if (touched != NULL) {
            Py_DECREF(touched);
        }
        else if (PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear(); /* evicted between lookup and touch: the read still holds */
        }
        else if (!PyErr_ExceptionMatches(PyExc_Exception) ||
                 report_read_failure(engine, skey) < 0) {
            goto done;
        }
        else {
            Py_DECREF(entry); /* reported: a miss */
            Py_INCREF(Py_None);
            entry = Py_None;
        }
    }
    if (entry == Py_None) {
        result = probe ? PyTuple_Pack(3, skey, Py_None, Py_None)
                       : after_read(engine, key, skey, fetch, ttl, Py_None, Py_None);
        goto done;
    }
    /* now = engine._now_read(): time.time read here, any other clock called. */
    PyObject *now_read = SLOT(engine, at[E_NOW]);
    PyObject *now_obj = NULL;
    double now = 0.0;
    if (now_read == NULL) {
        PyErr_SetString(PyExc_AttributeError, "engine has no clock");
        goto done;
    }
    if (now_read != self->wall || wall_now(&now) < 0) {
        Py_INCREF(now_read);
        now_obj = PyObject_CallNoArgs(now_read);
        Py_DECREF(now_read);
        if (now_obj == NULL) {
            goto done;
        }
        if (PyFloat_CheckExact(now_obj)) {
            now = PyFloat_AS_DOUBLE(now_obj);
        }
    }
    /* Compared as doubles when both are floats, else as execute compares them. */
    PyObject *odd_now = now_obj != NULL && !PyFloat_CheckExact(now_obj) ? now_obj : NULL;
    int fresh = is_fresh(self, entry, now, odd_now);
    if (fresh < 0) {
        goto done_now;
    }
    if (!fresh) {
        int serve = odd_now == NULL ? serves_stale(self, engine, entry, skey, now) : 0;
        if (serve < 0) {
            goto done_now;
        }
        if (serve) {
            PyObject *count = count_answer(engine, at[E_STALES]);
            if (count != NULL) {
                Py_DECREF(count);
                result = answer(self, engine, entry, self->stale, C_STALE);
            }
            goto done_now;
        }
        if (now_obj == NULL && (now_obj = PyFloat_FromDouble(now)) == NULL) {
            goto done;
        }
        result = probe ? PyTuple_Pack(3, skey, entry, now_obj)
                       : after_read(engine, key, skey, fetch, ttl, entry, now_obj);
        goto done_now;
    }
    PyObject *count = count_answer(engine, at[E_HITS]);
    if (count == NULL) {
        goto done_now;
    }
    hit_obs = SLOT(engine, at[E_HIT_OBS]);
    if (hit_obs != NULL && Py_IS_TYPE(hit_obs, self->observed) &&
        report_hit(self, engine, hit_obs, count) < 0) {
        Py_DECREF(count);
        goto done_now;
    }
    Py_DECREF(count);
    result = answer(self, engine, entry, self->hit, C_HIT);
done_now:
    Py_XDECREF(now_obj);
done:
    Py_XDECREF(entry);
    Py_DECREF(skey);
    return result;
}

/* Whether ``ttl``, given to one call, is one execute accepts (None, a CacheTTL, a
 * callable): check_call_ttl's test. Any other reaches execute, which refuses it. */
static inline int
ttl_accepted(EngineHit *self, PyObject *ttl)
{
    return ttl == Py_None || PyObject_TypeCheck(ttl, self->ttl_type) || PyCallable_Check(ttl);
}

static PyObject *
EngineHit_vectorcall(EngineHit *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    /* execute(key, fetch), execute(key, fetch, ttl) or execute(key, fetch, ttl=ttl): the
     * forms of a plain call and of a cached function's. */
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *ttl = Py_None;
    if (kwnames == NULL) {
        if (nargs == 4) {
            ttl = args[3];
        }
        else if (nargs != 3) {
            return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
        }
    }
    else if (nargs == 3 && PyTuple_GET_SIZE(kwnames) == 1 &&
             (PyTuple_GET_ITEM(kwnames, 0) == name_ttl ||
              PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), name_ttl) == 0)) {
        ttl = args[3];
    }
    else {
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    if (self->owner == NULL || !PyObject_TypeCheck(args[0], self->owner) ||
        !ttl_accepted(self, ttl)) {
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    PyObject *result = read_and_answer(self, args[0], args[1], args[2], ttl, 0);
    if (result == not_read) {
        Py_DECREF(result);
        return PyObject_Vectorcall(self->wrapped, args, nargsf, kwnames);
    }
    return result;
}

/* probe(engine, key, ttl, force_refresh, tags, should_cache, bypass): read_and_answer
 * for the asyncio engine, whose execute is a coroutine (see swr._engine.async_hit_path):
 * a Result, (skey, entry, now) to give _after_read, or None when nothing was read. */
static PyObject *
EngineHit_probe(EngineHit *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "probe(engine, key, ttl, force_refresh, tags, should_cache, bypass)");
        return NULL;
    }
    /* The other arguments of execute: a ttl it accepts, and the others' defaults. */
    PyObject *ttl = args[2];
    if (self->owner == NULL || !PyObject_TypeCheck(args[0], self->owner) ||
        !ttl_accepted(self, ttl) || args[3] != Py_False || args[4] != Py_None ||
        args[5] != Py_None || args[6] != Py_False) {
        Py_RETURN_NONE;
    }
    PyObject *result = read_and_answer(self, args[0], args[1], Py_None, ttl, 1);
    if (result == not_read) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    return result;
}

static PyObject *
EngineHit_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"execute", "wall",     "entry_type", "result_type", "hit",
                             "stale",   "observed", "ttl_type",   NULL};
    PyObject *execute, *wall, *entry_type, *result_type, *hit, *stale, *observed, *ttl_type;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!O!OOO!O!:EngineHit", kwlist, &execute,
                                     &wall, &PyType_Type, &entry_type, &PyType_Type,
                                     &result_type, &hit, &stale, &PyType_Type, &observed,
                                     &PyType_Type, &ttl_type)) {
        return NULL;
    }
    Py_ssize_t entry[C_SLOTS], result[R_SLOTS], obs[O_SLOTS];
    if (slot_offsets((PyTypeObject *)entry_type, ENTRY_SLOTS, C_SLOTS, entry) < 0 ||
        slot_offsets((PyTypeObject *)result_type, RESULT_SLOTS, R_SLOTS, result) < 0 ||
        slot_offsets((PyTypeObject *)observed, OBSERVED_SLOTS, O_SLOTS, obs) < 0) {
        return NULL;
    }
    if (((PyTypeObject *)result_type)->tp_alloc == NULL) {
        PyErr_SetString(PyExc_TypeError, "result_type cannot be allocated");
        return NULL;
    }
    EngineHit *self = (EngineHit *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    if (wrapper_init((Wrapper *)self, execute, wall) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    Py_INCREF(entry_type);
    Py_INCREF(result_type);
    Py_INCREF(hit);
    Py_INCREF(stale);
    Py_INCREF(observed);
    Py_INCREF(ttl_type);
    self->ttl_type = (PyTypeObject *)ttl_type;
    self->stale = stale;
    self->observed = (PyTypeObject *)observed;
    self->entry_type = (PyTypeObject *)entry_type;
    self->result_type = (PyTypeObject *)result_type;
    self->hit = hit;
    memcpy(self->entry, entry, sizeof(entry));
    memcpy(self->result, result, sizeof(result));
    memcpy(self->obs, obs, sizeof(obs));
    self->vectorcall = (vectorcallfunc)EngineHit_vectorcall;
    return (PyObject *)self;
}

static PyObject *
EngineHit_set_name(EngineHit *self, PyObject *const *args, Py_ssize_t nargs)
{
    return wrapper_set_owner((Wrapper *)self, args, nargs, ENGINE_SLOTS, E_SLOTS, self->engine);
}

static int
EngineHit_traverse(EngineHit *self, visitproc visit, void *arg)
{
    Py_VISIT(self->entry_type);
    Py_VISIT(self->result_type);
    Py_VISIT(self->hit);
    Py_VISIT(self->stale);
    Py_VISIT(self->observed);
    Py_VISIT(self->ttl_type);
    return wrapper_traverse((Wrapper *)self, visit, arg);
}

static int
EngineHit_clear(EngineHit *self)
{
    wrapper_clear((Wrapper *)self);
    Py_CLEAR(self->entry_type);
    Py_CLEAR(self->result_type);
    Py_CLEAR(self->hit);
    Py_CLEAR(self->stale);
    Py_CLEAR(self->observed);
    Py_CLEAR(self->ttl_type);
    return 0;
}

static void
EngineHit_dealloc(EngineHit *self)
{
    PyObject_GC_UnTrack(self);
    EngineHit_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef EngineHit_methods[] = {
    {"probe", (PyCFunction)(void (*)(void))EngineHit_probe, METH_FASTCALL,
     "probe(engine, key, ttl, force_refresh, tags, should_cache, bypass) -> Result, "
     "(skey, entry, now) or None: the asyncio engine's read."},
    {"__set_name__", (PyCFunction)(void (*)(void))EngineHit_set_name, METH_FASTCALL,
     "Find the slots of the engine class the method is defined in."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EngineHitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "swr._speedups.EngineHit",
    .tp_basicsize = sizeof(EngineHit),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_vectorcall_offset = offsetof(EngineHit, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = wrapper_descr_get,
    .tp_new = EngineHit_new,
    .tp_dealloc = (destructor)EngineHit_dealloc,
    .tp_traverse = (traverseproc)EngineHit_traverse,
    .tp_clear = (inquiry)EngineHit_clear,
    .tp_methods = EngineHit_methods,
    .tp_members = wrapper_members,
    .tp_getset = wrapper_getset,
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "swr._speedups",
    .m_doc = "StaleEngine.execute's fresh hit in C (optional).",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&EngineHitType) < 0) {
        return NULL;
    }
    if ((name_after_read = PyUnicode_InternFromString("_after_read")) == NULL ||
        (name_read_failed = PyUnicode_InternFromString("_read_failed")) == NULL ||
        (name_timed_lookup = PyUnicode_InternFromString("_timed_lookup")) == NULL ||
        (name_ttl = PyUnicode_InternFromString("ttl")) == NULL ||
        (name_value = PyUnicode_InternFromString("value")) == NULL ||
        (name_stored_at = PyUnicode_InternFromString("stored_at")) == NULL ||
        (name_fresh_until = PyUnicode_InternFromString("fresh_until")) == NULL) {
        return NULL;
    }
    if ((not_read = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type)) == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&EngineHitType);
    if (PyModule_AddObject(module, "EngineHit", (PyObject *)&EngineHitType) < 0) {
        Py_DECREF(&EngineHitType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
