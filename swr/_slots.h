/*
 * Helpers shared by swr's optional C extensions (swr._speedups, swr.storage._speedups):
 * reading the slots of a Python class by offset, the parts every C method wrapping a
 * Python one has (Wrapper), and time.time without a float object.
 */
#ifndef SWR_SLOTS_H
#define SWR_SLOTS_H

#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* The slot of ``obj`` at ``offset`` (a borrowed reference, NULL when unset). */
#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

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

/* The offsets of the slots ``names`` of ``type`` into ``offsets``; -1 with an error. */
static int
slot_offsets(PyTypeObject *type, const char *const *names, int n, Py_ssize_t *offsets)
{
    for (int i = 0; i < n; i++) {
        if ((offsets[i] = slot_offset(type, names[i])) < 0) {
            return -1;
        }
    }
    return 0;
}

/* The first fields of a C method that wraps a Python one, applied as a decorator in its
 * class's body (PoolGet, EngineHit): the Python method stays the rule and is called for
 * every case the C code leaves; __set_name__ (wrapper_set_owner) finds the slots the C
 * code reads. */
#define WRAPPER_HEAD                                                                       \
    PyObject_HEAD                                                                          \
    PyObject *wrapped;   /* the Python method */                                           \
    PyObject *wall;      /* time.time: read with clock_gettime when it is the clock */      \
    PyTypeObject *owner; /* the class (set by __set_name__; until then, wrapped is called) */

typedef struct {
    WRAPPER_HEAD
} Wrapper;

#define WRAPPER_MAX_SLOTS 16 /* slots of its class one wrapper reads */

/* Fill the head of a new wrapper: 0, or -1 with an error. */
static int
wrapper_init(Wrapper *self, PyObject *wrapped, PyObject *wall)
{
    if (!PyCallable_Check(wrapped) || !PyCallable_Check(wall)) {
        PyErr_SetString(PyExc_TypeError, "the wrapped method and wall must be callable");
        return -1;
    }
    Py_INCREF(wrapped);
    Py_INCREF(wall);
    self->wrapped = wrapped;
    self->wall = wall;
    return 0;
}

/* __set_name__(owner, name): the offsets of the slots ``names`` of ``owner`` into
 * ``offsets``, and ``owner`` kept. None, or NULL with an error. */
static PyObject *
wrapper_set_owner(Wrapper *self, PyObject *const *args, Py_ssize_t nargs,
                  const char *const *names, int n, Py_ssize_t *offsets)
{
    if (nargs != 2 || !PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "__set_name__(owner, name) takes a class and a name");
        return NULL;
    }
    PyTypeObject *owner = (PyTypeObject *)args[0];
    Py_ssize_t found[WRAPPER_MAX_SLOTS];
    if (n > WRAPPER_MAX_SLOTS) {
        PyErr_SetString(PyExc_SystemError, "too many slots for a wrapper");
        return NULL;
    }
    if (slot_offsets(owner, names, n, found) < 0) {
        return NULL; /* the offsets found before, if any, stay */
    }
    memcpy(offsets, found, (size_t)n * sizeof(Py_ssize_t));
    Py_INCREF(owner);
    Py_XSETREF(self->owner, owner);
    Py_RETURN_NONE;
}

static int
wrapper_traverse(Wrapper *self, visitproc visit, void *arg)
{
    Py_VISIT(self->wrapped);
    Py_VISIT(self->wall);
    Py_VISIT(self->owner);
    return 0;
}

static void
wrapper_clear(Wrapper *self)
{
    Py_CLEAR(self->wrapped);
    Py_CLEAR(self->wall);
    Py_CLEAR(self->owner);
}

/* tp_descr_get of a wrapper: itself read on the class, bound to an instance (a call on
 * the instance passes it first, without binding: the type has
 * Py_TPFLAGS_METHOD_DESCRIPTOR). */
static PyObject *
wrapper_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

/* __doc__, __name__, __qualname__ and __module__ are the wrapped method's. */
static PyObject *
wrapper_attr(PyObject *self, void *name)
{
    return PyObject_GetAttrString(((Wrapper *)self)->wrapped, (const char *)name);
}

static PyGetSetDef wrapper_getset[] = {
    {"__doc__", wrapper_attr, NULL, NULL, "__doc__"},
    {"__name__", wrapper_attr, NULL, NULL, "__name__"},
    {"__qualname__", wrapper_attr, NULL, NULL, "__qualname__"},
    {"__module__", wrapper_attr, NULL, NULL, "__module__"},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMemberDef wrapper_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(Wrapper, wrapped), READONLY, "The Python method."},
    {NULL, 0, 0, 0, NULL},
};

/* time.time() as a double, computed as time.time computes it (nanoseconds, then
 * seconds); -1 (no error set) where the clock cannot be read here: call time.time. */
static int
wall_now(double *now)
{
#ifdef CLOCK_REALTIME
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
        int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
        *now = ns % 1000000000 == 0 ? (double)(ns / 1000000000) : (double)ns / 1e9;
        return 0;
    }
#endif
    return -1;
}

#endif /* SWR_SLOTS_H */
