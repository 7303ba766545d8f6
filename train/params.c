/* Parameter lists and gradient clipping (torch.nn.utils.clip_grad_norm_'s rule); the lists may own their
   parameters (tg_params_create). */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "train_internal.h"

/* The optimizers' state names (train_internal.h). */
const tg__state_name tg__states[3] = {{".sgd_momentum", 0, 0}, {".adam_m", 1, 0}, {".adam_v", 1, 1}};


tg_params *tg_params_new(void) {
    tg_params *ps = tg__calloc(sizeof *ps);
    if (!ps) tg__fail(TG_ENOMEM, "tg_params_new: out of memory");
    return ps;
}

void *tg__params_scratch(tg_params *ps, size_t bytes) {
    if (ps->scratch_bytes < bytes) {
        void *p = tg__malloc(bytes);
        if (!p) return NULL;
        tg__free(ps->scratch);
        ps->scratch = p;
        ps->scratch_bytes = bytes;
    }
    return ps->scratch;
}

void tg_params_free(tg_params *ps) {
    if (!ps) return;
    tg__free(ps->scratch);
    for (int i = 0; i < ps->n; i++) {
        tg__free(ps->names[i]);
        if (ps->owned[i]) tg_tensor_free(ps->ts[i]);
    }
    tg__free(ps->names);
    tg__free(ps->owned);
    tg__free(ps->ts);
    tg__free(ps);
}

/* The index of the parameter named by the len bytes at name, or -1. */
int tg__params_index(const tg_params *ps, const char *name, size_t len) {
    for (int i = 0; i < ps->n; i++)
        if (strlen(ps->names[i]) == len && !memcmp(ps->names[i], name, len)) return i;
    return -1;
}

int tg__ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

tg_status tg_params_add(tg_params *ps, const char *name, tg_tensor *param) {
    static const char fn[] = "tg_params_add";
    if (!ps) return tg__null(fn, "params");
    if (!name) return tg__null(fn, "name");
    if (!param) {
        char what[80];
        snprintf(what, sizeof what, "param \"%.60s\"", name);
        return tg__null(fn, what);
    }
    if (tg__stale(fn, "param", param)) return TG_ESTATE;
    if (!name[0]) return tg__fail(TG_EINVAL, "%s: the name is empty", fn);
    if (!strcmp(name, "__metadata__"))
        return tg__fail(TG_EINVAL, "%s: \"__metadata__\" is reserved by the safetensors format", fn);
    for (int k = 0; k < 3; k++)
        if (tg__ends_with(name, tg__states[k].suffix))
            return tg__fail(TG_EINVAL, "%s: \"%s\" ends in \"%s\", which checkpoints keep optimizer state under",
                            fn, name, tg__states[k].suffix);
    if (!(param->flags & TG__PARAM))
        return tg__fail(TG_EINVAL, "%s: \"%s\" is not a parameter (make it with tg_param_new)", fn, name);
    if (tg__params_index(ps, name, strlen(name)) >= 0)
        return tg__fail(TG_EINVAL, "%s: the list already holds a parameter named \"%s\"", fn, name);
    for (int i = 0; i < ps->n; i++)
        if (ps->ts[i] == param)
            return tg__fail(TG_EINVAL, "%s: \"%s\" is the tensor the list already holds as \"%s\"", fn, name,
                            ps->names[i]);
    if (ps->users)
        return tg__fail(TG_ESTATE, "%s: \"%s\": %d optimizer(s) use this list; free them before adding", fn,
                        name, ps->users);
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 8;
        char **names = tg__malloc((size_t)cap * sizeof *names);
        tg_tensor **ts = names ? tg__malloc((size_t)cap * sizeof *ts) : NULL;
        unsigned char *owned = ts ? tg__malloc((size_t)cap) : NULL;
        if (!owned) {
            tg__free(names), tg__free(ts);
            return tg__fail(TG_ENOMEM, "%s: out of memory for \"%s\"", fn, name);
        }
        if (ps->n) memcpy(names, ps->names, (size_t)ps->n * sizeof *names);
        if (ps->n) memcpy(ts, ps->ts, (size_t)ps->n * sizeof *ts);
        if (ps->n) memcpy(owned, ps->owned, (size_t)ps->n);
        tg__free(ps->names), tg__free(ps->ts), tg__free(ps->owned);
        ps->names = names, ps->ts = ts, ps->owned = owned, ps->cap = cap;
    }
    size_t len = strlen(name) + 1;
    char *copy = tg__malloc(len);
    if (!copy) return tg__fail(TG_ENOMEM, "%s: out of memory for \"%s\"", fn, name);
    if (tg__name_once(fn, param, name)) return tg__free(copy), TG_ENOMEM; /* the drawings show the name */
    ps->names[ps->n] = memcpy(copy, name, len);
    ps->owned[ps->n] = 0;
    ps->ts[ps->n++] = param;
    return TG_OK;
}

void tg__params_truncate(tg_params *ps, int n) {
    while (ps->n > n) {
        ps->n--;
        tg__free(ps->names[ps->n]);
        if (ps->owned[ps->n]) tg_tensor_free(ps->ts[ps->n]);
    }
}

tg_tensor *tg_params_create(tg_params *ps, const char *name, tg_dtype dtype, int ndim, const int64_t *shape) {
    static const char fn[] = "tg_params_create";
    if (!ps) return tg__null(fn, "params"), NULL;
    if (!name) return tg__null(fn, "name"), NULL;
    tg_tensor *p = tg_param_new(dtype, ndim, shape);
    if (!p) return tg__context("%s: \"%.60s\": ", fn, name), NULL;
    if (tg_params_add(ps, name, p)) {
        tg_tensor_free(p);
        return tg__context("%s: ", fn), NULL;
    }
    ps->owned[ps->n - 1] = 1;
    return p;
}

int tg_params_count(const tg_params *ps) { return ps ? ps->n : 0; }

tg_tensor *tg_params_at(const tg_params *ps, int i, const char **name) {
    if (name) *name = NULL;
    if (!ps) return tg__null("tg_params_at", "params"), NULL;
    if (i < 0 || i >= ps->n) {
        tg__fail(TG_EINVAL, "tg_params_at: index %d outside 0..%d", i, ps->n - 1);
        return NULL;
    }
    if (name) *name = ps->names[i];
    return ps->ts[i];
}

tg_tensor *tg_params_find(const tg_params *ps, const char *name) {
    if (!ps || !name) return tg__null("tg_params_find", ps ? "name" : "params"), NULL;
    int i = tg__params_index(ps, name, strlen(name));
    if (i < 0) tg__fail(TG_EINVAL, "tg_params_find: no parameter named \"%s\"", name);
    return i < 0 ? NULL : ps->ts[i];
}

void tg_params_zero_grad(tg_params *ps) {
    for (int i = 0; ps && i < ps->n; i++) tg_zero_grad(ps->ts[i]);
}

double tg_params_grad_norm(const tg_params *ps) {
    if (!ps) return tg__null("tg_params_grad_norm", "params"), NAN;
    double sq = 0;
    for (int i = 0; i < ps->n; i++) {
        const tg_tensor *t = ps->ts[i];
        TG__DISPATCH(t->dtype, {
            const T *g = t->grad;
            for (int64_t k = 0; k < t->numel; k++) sq += (double)g[k] * (double)g[k];
        });
    }
    return sqrt(sq);
}

double tg_params_clip_grad_norm(tg_params *ps, double max_norm) {
    static const char fn[] = "tg_params_clip_grad_norm";
    if (!ps) return tg__null(fn, "params"), NAN;
    if (!(max_norm >= 0)) return tg__fail(TG_EINVAL, "%s: max_norm is %g, want >= 0", fn, max_norm), NAN;
    double norm = tg_params_grad_norm(ps);
    if (!isfinite(norm)) {
        int i = 0;
        while (i < ps->n && !tg__nonfinite(ps->ts[i], ps->ts[i]->grad)) i++;
        if (i < ps->n)
            tg__fail(TG_ENONFINITE, "%s: the gradients' norm is %g: the gradient of \"%s\" is not finite; "
                     "the gradients are left unclipped", fn, norm, ps->names[i]);
        else
            tg__fail(TG_ENONFINITE, "%s: the gradients' norm is %g: their sum of squares overflows a double; "
                     "the gradients are left unclipped", fn, norm);
        return norm;
    }
    /* torch's rule, its 1e-6 included: a norm just above max_norm still scales by slightly less than 1 */
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1)
        for (int i = 0; i < ps->n; i++) {
            tg_tensor *t = ps->ts[i];
            TG__DISPATCH(t->dtype, {
                T *g = t->grad;
                for (int64_t k = 0; k < t->numel; k++) g[k] = (T)((double)g[k] * coef);
            });
        }
    return norm;
}

