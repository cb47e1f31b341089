/*
 * Helpers shared by swr's optional C extensions (swr._speedups, swr.storage._speedups):
 * reading the slots of a Python class by offset, binding a method written in C, and
 * time.time without a float object.
 */
#ifndef SWR_SLOTS_H
#define SWR_SLOTS_H

#include <Python.h>
#include <structmember.h>
#include <stdint.h>
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

/* tp_descr_get of a method written in C: itself read on the class, bound to an
 * instance (a call on the instance passes it first, without binding: the type has
 * Py_TPFLAGS_METHOD_DESCRIPTOR). */
static PyObject *
method_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        Py_INCREF(self);
        return self;
    }
    return PyMethod_New(self, obj);
}

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
