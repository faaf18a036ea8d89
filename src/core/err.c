#include "core.h"

#include <stdarg.h>
#include <stdio.h>

const char *sl_strerror(int code)
{
    switch (code) {
    case SL_OK: return "success";
    case SL_ENOMEM: return "out of memory";
    case SL_EINVAL: return "invalid argument";
    case SL_EIO: return "I/O error";
    case SL_ERANGE: return "value out of range";
    case SL_ETOOBIG: return "size limit exceeded";
    case SL_ENOTFOUND: return "not found";
    case SL_ETIMEDOUT: return "timed out";
    case SL_EPARSE: return "parse error";
    case SL_EUNSUPPORTED: return "not supported";
    case SL_ECANCELED: return "cancelled";
    case SL_EAGAIN: return "try again";
    case SL_EUPSTREAM: return "upstream error";
    case SL_EFULL: return "full";
    case SL_ECORRUPT: return "corrupt data";
    case SL_EEXIST: return "already exists";
    case SL_ESTATE: return "invalid state";
    default: return "unknown error";
    }
}

int sl_errf(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}
