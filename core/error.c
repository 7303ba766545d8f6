/* The thread-local error: the library's only mutable state outside its objects. */
#include <stdio.h>
#include <string.h>
#include "tg_internal.h"

static _Thread_local tg_status last_status = TG_OK;
static _Thread_local char last_message[512];
static _Thread_local uint64_t fail_count;

/* Every failure passes through here: one place for a breakpoint. */
static tg_status vfail(tg_status status, const char *fmt, va_list ap) {
    vsnprintf(last_message, sizeof last_message, fmt ? fmt : "", ap);
    last_status = status;
    fail_count++;
    return status;
}

tg_status tg__fail(tg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

uint64_t tg__fail_count(void) { return fail_count; }

void tg__error_save(tg__error *e) {
    e->status = last_status;
    memcpy(e->message, last_message, sizeof e->message);
}

void tg__error_restore(const tg__error *e) {
    last_status = e->status;
    memcpy(last_message, e->message, sizeof last_message);
}

tg_status tg_set_error(tg_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfail(status, fmt, ap);
    va_end(ap);
    return status;
}

tg_status tg__context(const char *fmt, ...) {
    char prefix[160], inner[sizeof last_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(inner, last_message, sizeof inner);
    return tg__fail(last_status, "%s%s", prefix, inner);
}

tg_status tg__null(const char *fn, const char *name) {
    return last_status ? last_status : tg__fail(TG_EINVAL, "%s: %s is NULL", fn, name);
}

tg_status tg_last_status(void) { return last_status; }
const char *tg_last_error(void) { return last_message; }

void tg_clear_error(void) {
    last_status = TG_OK;
    last_message[0] = '\0';
}

const char *tg_status_name(tg_status status) {
    static const char *const names[] = {"TG_OK",     "TG_EINVAL",    "TG_ESHAPE", "TG_EDTYPE",
                                        "TG_ENOMEM", "TG_ESTATE",    "TG_EMODIFIED", "TG_EIO",
                                        "TG_EFORMAT", "TG_ENONFINITE"};
    return (unsigned)status < sizeof names / sizeof names[0] ? names[status] : "TG_(unknown)";
}

const char *tg__shape_str(int ndim, const int64_t *shape, char *buf) {
    size_t n = 0;
    buf[n++] = '(';
    for (int i = 0; i < ndim && n < TG__SHAPE_STR - 24; i++)
        n += (size_t)snprintf(buf + n, TG__SHAPE_STR - n, i ? ",%lld" : "%lld", (long long)shape[i]);
    /* NumPy writes a 1-d shape as (3,); so do we, so messages read the same as Python's. */
    if (ndim == 1) buf[n++] = ',';
    buf[n++] = ')';
    buf[n] = '\0';
    return buf;
}

const char *tg__dtype_name(tg_dtype dtype) {
    return dtype == TG_F32 ? "f32" : dtype == TG_F64 ? "f64" : dtype == TG_I64 ? "i64" : "(bad dtype)";
}
