/* The hot loop of optuna_journal.backends.frames.parse, in C.
 *
 * A cold open checks and slices every frame of the log: hundreds of thousands of frames,
 * each a few dozen bytes, for which the interpreter's per-frame overhead is most of the cost
 * (a fifth of the instructions of opening a 20,000-trial journal). This loop accepts only
 * frames that are plainly sound and stops at the first other one; frames.parse tells, in
 * Python, what is wrong there (torn or corrupt), so every judgement and message stays there.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <zlib.h>

#define HEADER_SIZE 12
/* A durability mark (frames.mark): this length field, an 8-byte payload, never returned. */
#define MARK_LENGTH 0x80000008u
#define MARK_PAYLOAD 8

static uint32_t
le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static PyObject *
scan(PyObject *module, PyObject *args)
{
    Py_buffer view;
    int strict = 0;
    if (!PyArg_ParseTuple(args, "y*|p:scan", &view, &strict)) {
        if (PyErr_ExceptionMatches(PyExc_BufferError)) {
            /* A buffer that is not one contiguous run of bytes (memoryview(b)[::2]): a wrong
               argument, as a str is, so the same TypeError. */
            PyErr_Clear();
            PyErr_SetString(PyExc_TypeError,
                            "scan() needs a C-contiguous bytes-like object (bytes, bytearray, "
                            "or a contiguous memoryview)");
        }
        return NULL;
    }
    const unsigned char *buf = view.buf;
    Py_ssize_t end = view.len, pos = 0;
    PyObject *payloads = PyList_New(0);
    if (payloads == NULL) {
        goto fail;
    }
    while (end - pos >= HEADER_SIZE) {
        uint32_t length = le32(buf + pos);
        int mark = length == MARK_LENGTH;
        if (mark) {
            length = MARK_PAYLOAD;
        }
        Py_ssize_t start = pos + HEADER_SIZE;
        if ((Py_ssize_t)length > end - start
            || crc32(0, buf + start, length) != le32(buf + pos + 4)
            /* An empty payload passes its check whatever the header says, and a mark's
               flag is outside its payload: read the header's own checksum, as strict mode
               does for every frame. */
            || ((strict || length == 0 || mark)
                && crc32(0, buf + pos, 8) != le32(buf + pos + 8))) {
            break;
        }
        if (mark) {
            pos = start + length;
            continue;
        }
        PyObject *payload = PyBytes_FromStringAndSize((const char *)buf + start, length);
        if (payload == NULL || PyList_Append(payloads, payload) < 0) {
            Py_XDECREF(payload);
            goto fail;
        }
        Py_DECREF(payload);
        pos = start + length;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nn)", payloads, pos);
fail:
    Py_XDECREF(payloads);
    PyBuffer_Release(&view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(buf, strict=False) -> (payloads, stop): the payloads of the sound frames at the start "
     "of buf (durability marks skipped), and the offset of the first frame that is not one (or "
     "of the end)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef frames_module = {
    PyModuleDef_HEAD_INIT, "optuna_journal.backends._frames",
    "The hot loop of optuna_journal.backends.frames.parse, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__frames(void)
{
    return PyModule_Create(&frames_module);
}
