/* SGD/Adam/AdamW and checkpoints: torch.optim's rules, in C (parameter lists and clipping: params.c). */
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tg_train.h"
#include "io_internal.h"
#include "tg_io.h"
#include "train_internal.h"


struct tg_optim {
    tg_params *params;
    tg_optim_opts opts;
    int64_t steps;     /* tg_optim_step calls */
    int64_t *t;        /* per parameter: the steps it took (a skipped parameter's does not advance) */
    tg_tensor **state; /* per parameter two slots: SGD's momentum buffer, or Adam's m and v; NULL unused */
};

#define SUFFIX_MAX 16 /* bytes of the longest, with its NUL */

static const char *suffix(tg_optim_kind kind, int slot) {
    return kind == TG_OPTIM_SGD ? tg__states[0].suffix : tg__states[1 + slot].suffix;
}

/* How many slots a kind fills: SGD without momentum keeps no buffer, as torch's stays None. */
static int n_state(tg_optim_kind kind, double momentum) { return kind == TG_OPTIM_SGD ? momentum != 0 : 2; }

static const char *const kind_names[] = {"sgd", "adam", "adamw"};

/* The double options, in checkpoint order: the key names the option in every message. */
static const struct {
    const char *key;
    size_t off;
    int below_one; /* a beta: in [0, 1) */
} fields[] = {
    {"optim.lr", offsetof(tg_optim_opts, lr), 0},
    {"optim.momentum", offsetof(tg_optim_opts, momentum), 0},
    {"optim.beta1", offsetof(tg_optim_opts, beta1), 1},
    {"optim.beta2", offsetof(tg_optim_opts, beta2), 1},
    {"optim.eps", offsetof(tg_optim_opts, eps), 0},
    {"optim.weight_decay", offsetof(tg_optim_opts, weight_decay), 0},
};
#define N_FIELDS ((int)(sizeof fields / sizeof fields[0]))
#define FIELD(o, i) (*(double *)((char *)(o) + fields[i].off))
#define CFIELD(o, i) (*(const double *)((const char *)(o) + fields[i].off))

/* The shortest of %.15g, %.16g, %.17g that reads back as v, into buf (32 bytes): exact, and "0.1" rather than
   "0.10000000000000001", in files and messages. */
static const char *shortest(double v, char *buf) {
    int prec = 15;
    while (snprintf(buf, 32, "%.*g", prec, v), prec < 17 && strtod(buf, NULL) != v) prec++;
    return buf;
}

/* ---- optimizers ---- */

tg_optim_opts tg_optim_defaults(tg_optim_kind kind) {
    tg_optim_opts o = {.kind = kind, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    if (kind == TG_OPTIM_ADAM || kind == TG_OPTIM_ADAMW) o.lr = 1e-3;
    if (kind == TG_OPTIM_ADAMW) o.weight_decay = 1e-2;
    return o;
}

/* What is wrong with o, in why (as "<key> is <value>, want ..."), or NULL. */
static const char *opts_problem(const tg_optim_opts *o, char *why, size_t size) {
    if ((unsigned)o->kind > TG_OPTIM_ADAMW) return snprintf(why, size, "kind %d is unknown", (int)o->kind), why;
    for (int i = 0; i < N_FIELDS; i++) {
        double v = CFIELD(o, i);
        char s[32];
        if (!isfinite(v) || v < 0 || (fields[i].below_one && v >= 1))
            return snprintf(why, size, "%s is %s, want %s", fields[i].key + 6, shortest(v, s),
                            fields[i].below_one ? "0 <= value < 1" : "a finite value >= 0"), why;
    }
    if (o->nesterov && o->momentum == 0)
        return snprintf(why, size, "nesterov is on with momentum 0: Nesterov momentum requires a momentum"), why;
    return NULL;
}

static void free_state(tg_tensor **state, int n) {
    for (int i = 0; state && i < 2 * n; i++) tg_tensor_free(state[i]);
    tg__free(state);
}

tg_optim *tg_optim_new(tg_params *ps, const tg_optim_opts *opts) {
    static const char fn[] = "tg_optim_new";
    if (!ps || !opts) return tg__null(fn, ps ? "opts" : "params"), NULL;
    char why[160];
    if (opts_problem(opts, why, sizeof why)) return tg__fail(TG_EINVAL, "%s: %s", fn, why), NULL;
    tg_optim *o = tg__calloc(sizeof *o);
    if (o) o->t = tg__calloc((size_t)ps->n * sizeof *o->t);
    if (o && o->t) o->state = tg__calloc((size_t)ps->n * 2 * sizeof *o->state);
    int ok = o && o->t && o->state, ns = n_state(opts->kind, opts->momentum);
    for (int i = 0; ok && i < ps->n; i++)
        for (int j = 0; ok && j < ns; j++) {
            const tg_tensor *p = ps->ts[i];
            ok = (o->state[2 * i + j] = tg_tensor_new(p->dtype, p->ndim, p->shape)) != NULL;
        }
    if (!ok) {
        if (o) free_state(o->state, ps->n), tg__free(o->t);
        tg__free(o);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the state of %d parameters", fn, ps->n), NULL;
    }
    o->params = ps;
    o->opts = *opts;
    ps->users++;
    return o;
}

void tg_optim_free(tg_optim *o) {
    if (!o) return;
    o->params->users--;
    free_state(o->state, o->params->n);
    tg__free(o->t);
    tg__free(o);
}

int64_t tg_optim_steps(const tg_optim *optim) { return optim ? optim->steps : 0; }

void tg_optim_set_lr(tg_optim *o, double lr) {
    if (!o) {
        tg__null("tg_optim_set_lr", "optim");
        return;
    }
    if (!(isfinite(lr) && lr >= 0)) {
        char s[32];
        tg__fail(TG_EINVAL, "tg_optim_set_lr: lr is %s, want a finite value >= 0", shortest(lr, s));
        return;
    }
    o->opts.lr = lr;
}

/* State is used as stored (rounded to the dtype), as torch's f32 state is. Each rule is one loop over
   restrict pointers with its options' branches hoisted out, so that the compiler vectorizes it; the
   arithmetic is the element-wise rule's, in the same order, so the results are those of the scalar loop
   to the bit (f32 as f32 <- double, as before), in each of TG__CLONES' copies. */
#define SGD_LOOP(WD, MU, NESTEROV)                                                                 \
    for (int64_t k = 0; k < n; k++) {                                                              \
        double g = gr[k];                                                                          \
        if (WD) g += wd * (double)p[k]; /* skipped at 0, as torch: 0 * Inf would be NaN */         \
        if (MU) {                                                                                  \
            b[k] = (T)(first ? g : mu * (double)b[k] + g);                                         \
            g = (NESTEROV) ? g + mu * (double)b[k] : (double)b[k];                                 \
        }                                                                                          \
        p[k] = (T)((double)p[k] - lr * g);                                                         \
    }
TG__CLONES static void sgd(const tg_optim_opts *o, tg_tensor *w, void *buf, int first) {
    const double lr = o->lr, mu = o->momentum, wd = o->weight_decay;
    const int64_t n = w->numel;
    TG__DISPATCH(w->dtype, {
        T *restrict p = w->data, *restrict b = buf;
        const T *restrict gr = w->grad;
        if (mu == 0 && wd == 0) SGD_LOOP(0, 0, 0)
        else if (mu == 0) SGD_LOOP(1, 0, 0)
        else if (o->nesterov) SGD_LOOP(wd != 0, 1, 1)
        else SGD_LOOP(wd != 0, 1, 0)
    });
}

#define ADAM_LOOP(ADAMW, L2)                                                                       \
    for (int64_t k = 0; k < n; k++) {                                                              \
        double g = gr[k], x = p[k];                                                                \
        if (ADAMW) x *= decay;                                                                     \
        if (L2) g += wd * x;                                                                       \
        m[k] = (T)(b1 * (double)m[k] + (1 - b1) * g);                                              \
        v[k] = (T)(b2 * (double)v[k] + (1 - b2) * g * g);                                          \
        p[k] = (T)(x - lr * ((double)m[k] / bc1) / (sqrt((double)v[k] / bc2) + eps));              \
    }
TG__CLONES static void adam(const tg_optim_opts *o, tg_tensor *w, void *m_, void *v_, int64_t t) {
    const int adamw = o->kind == TG_OPTIM_ADAMW;
    const double lr = o->lr, b1 = o->beta1, b2 = o->beta2, eps = o->eps, wd = o->weight_decay;
    const double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t), decay = 1 - lr * wd;
    const int64_t n = w->numel;
    TG__DISPATCH(w->dtype, {
        T *restrict p = w->data, *restrict m = m_, *restrict v = v_;
        const T *restrict gr = w->grad;
        if (adamw) ADAM_LOOP(1, 0)
        else if (wd != 0) ADAM_LOOP(0, 1)
        else ADAM_LOOP(0, 0)
    });
}

tg_status tg_optim_step(tg_optim *o) {
    if (!o) return tg__null("tg_optim_step", "optim");
    for (int i = 0; i < o->params->n; i++) {
        tg_tensor *w = o->params->ts[i];
        if (!(w->flags & TG__GRADDED)) continue;
        int64_t t = ++o->t[i];
        void *s0 = o->state[2 * i] ? o->state[2 * i]->data : NULL;
        if (o->opts.kind == TG_OPTIM_SGD) sgd(&o->opts, w, s0, t == 1);
        else adam(&o->opts, w, s0, o->state[2 * i + 1]->data, t);
    }
    o->steps++;
    return TG_OK;
}

/* ---- checkpoints ---- */

/* Strings carved one after another from a block sized beforehand. */
typedef struct {
    char *p;
    size_t left;
} strbuf;

static const char *put(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p, b->left, fmt, ap);
    va_end(ap);
    const char *s = b->p;
    b->p += k + 1, b->left -= (size_t)k + 1;
    return s;
}

static const char *put_double(strbuf *b, double v) {
    char s[32];
    return put(b, "%s", shortest(v, s));
}

static tg_status check_pair(const char *fn, const tg_params *ps, const tg_optim *o) {
    if (o && o->params != ps) return tg__fail(TG_EINVAL, "%s: optim was made for another parameter list", fn);
    return TG_OK;
}

tg_status tg_checkpoint_save(const char *path, const tg_params *ps, const tg_optim *o) {
    static const char fn[] = "tg_checkpoint_save";
    if (!path || !ps) return tg__null(fn, path ? "params" : "path");
    if (check_pair(fn, ps, o)) return TG_EINVAL;
    int n = ps->n, ns = o ? n_state(o->opts.kind, o->opts.momentum) : 0, nt = n * (1 + ns);
    int nm = o ? 3 + N_FIELDS + n : 0; /* kind, the doubles, nesterov, steps, a step count per parameter */
    size_t bytes = 64 * (size_t)nm;
    for (int i = 0; i < n; i++) bytes += 3 * strlen(ps->names[i]) + 2 * SUFFIX_MAX;
    const char **names = tg__malloc((size_t)(nt + 2 * nm) * sizeof *names + bytes);
    tg_tensor **ts = names ? tg__malloc((size_t)nt * sizeof *ts + 1) : NULL;
    if (!ts) {
        tg__free(names);
        return tg__fail(TG_ENOMEM, "%s: out of memory for the names of %d tensors", fn, nt);
    }
    const char **kv = names + nt;
    strbuf b = {(char *)(kv + 2 * nm), bytes};
    for (int i = 0; i < n; i++) {
        names[i] = ps->names[i], ts[i] = ps->ts[i];
        for (int j = 0; j < ns; j++) {
            names[n * (1 + j) + i] = put(&b, "%s%s", ps->names[i], suffix(o->opts.kind, j));
            ts[n * (1 + j) + i] = o->state[2 * i + j];
        }
    }
    if (o) {
        int m = 0;
        kv[m++] = "optim.kind", kv[m++] = kind_names[o->opts.kind];
        for (int i = 0; i < N_FIELDS; i++) kv[m++] = fields[i].key, kv[m++] = put_double(&b, CFIELD(&o->opts, i));
        kv[m++] = "optim.nesterov", kv[m++] = o->opts.nesterov ? "1" : "0";
        kv[m++] = "optim.steps", kv[m++] = put(&b, "%" PRId64, o->steps);
        for (int i = 0; i < n; i++)
            kv[m++] = put(&b, "optim.step.%s", ps->names[i]), kv[m++] = put(&b, "%" PRId64, o->t[i]);
    }
    tg_status st = tg__save_safetensors_meta(fn, path, names, ts, nt, kv, nm);
    tg__free(ts);
    tg__free(names);
    return st;
}

/* A damaged or mismatched checkpoint: TG_EFORMAT, naming the function and the file. */
static tg_status bad(const char *path, const char *fmt, ...) {
    char why[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return tg__fail(TG_EFORMAT, "tg_checkpoint_load: %s: %s", path, why);
}

static const char *meta_get(char **kv, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(kv[2 * i], key)) return kv[2 * i + 1];
    return NULL;
}

/* A metadata value that is missing (s NULL) or not what it should be. */
static tg_status bad_value(const char *path, const char *key, const char *s, const char *want) {
    if (!s) return bad(path, "%s is missing from __metadata__", key);
    return bad(path, "%s is \"%.40s\", %s", key, s, want);
}

/* A whole decimal integer in 0..INT64_MAX, digits only. */
static int parse_count(const char *s, int64_t *v) {
    int64_t x = 0;
    if (!s || !*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || x > (INT64_MAX - (*s - '0')) / 10) return 0;
        x = x * 10 + (*s - '0');
    }
    return *v = x, 1;
}

/* The optimizer's part of the metadata into *opts, *steps and t[0..n): every key present and valid. */
static tg_status read_optim_meta(const char *path, char **kv, int nkv, const tg_params *ps, const tg_optim *o,
                                 tg_optim_opts *opts, int64_t *steps, int64_t *t) {
    const char *kind = meta_get(kv, nkv, "optim.kind"), *s;
    if (!kind) return bad(path, "the file holds no optimizer state (no optim.kind in __metadata__)");
    if (strcmp(kind, kind_names[o->opts.kind]))
        return bad(path, "optim.kind is \"%.40s\", this optimizer is %s", kind, kind_names[o->opts.kind]);
    *opts = o->opts;
    for (int i = 0; i < N_FIELDS; i++) {
        char *end = NULL;
        s = meta_get(kv, nkv, fields[i].key);
        if (s) FIELD(opts, i) = strtod(s, &end);
        if (!s || !*s || isspace((unsigned char)*s) || *end)
            return bad_value(path, fields[i].key, s, "not a number");
    }
    s = meta_get(kv, nkv, "optim.nesterov");
    if (!s || (strcmp(s, "0") && strcmp(s, "1"))) return bad_value(path, "optim.nesterov", s, "want \"0\" or \"1\"");
    opts->nesterov = s[0] == '1';
    char why[160];
    if (opts_problem(opts, why, sizeof why)) return bad(path, "optim.%s", why);
    if (!parse_count(s = meta_get(kv, nkv, "optim.steps"), steps))
        return bad_value(path, "optim.steps", s, "not a count");
    for (int i = 0; i < ps->n; i++) {
        size_t len = strlen(ps->names[i]) + sizeof "optim.step.";
        char key[128], *k = len <= sizeof key ? key : tg__malloc(len);
        if (!k) return tg__fail(TG_ENOMEM, "tg_checkpoint_load: %s: out of memory for a key", path);
        snprintf(k, len, "optim.step.%s", ps->names[i]);
        tg_status st = parse_count(s = meta_get(kv, nkv, k), &t[i]) ? TG_OK : bad_value(path, k, s, "not a count");
        if (k != key) tg__free(k);
        if (st) return st;
    }
    return TG_OK;
}

/* The file's tensor against the parameter it belongs to: the same dtype and shape. */
static tg_status same_as(const char *path, const char *name, const tg_tensor *f, const tg_tensor *p) {
    char a[TG__SHAPE_STR], b[TG__SHAPE_STR];
    if (f->dtype != p->dtype || f->ndim != p->ndim || memcmp(f->shape, p->shape, (size_t)p->ndim * sizeof *p->shape))
        return bad(path, "tensor \"%s\" is %s %s in the file, the list's is %s %s", name, tg__dtype_name(f->dtype),
                   tg__shape_str(f->ndim, f->shape, a), tg__dtype_name(p->dtype), tg__shape_str(p->ndim, p->shape, b));
    return TG_OK;
}

/* Matches every tensor of the file to its place: dst[k] is where file tensor k goes, NULL to skip it. seen
   marks parameter i (seen[3i]) and its state slots (seen[3i + 1 + slot]) as found. */
static tg_status match(const char *path, char **names, tg_tensor **ft, int n, const tg_params *ps,
                       const tg_optim *o, const tg_optim_opts *opts, tg_tensor **fresh, void **dst,
                       unsigned char *seen) {
    const int ns = o ? n_state(opts->kind, opts->momentum) : 0, adam = opts->kind != TG_OPTIM_SGD;
    for (int k = 0; k < n; k++) {
        int i = tg__params_index(ps, names[k], strlen(names[k])), s = -1;
        for (int j = 0; i < 0 && j < 3; j++)
            if (tg__ends_with(names[k], tg__states[j].suffix))
                i = tg__params_index(ps, names[k], strlen(names[k]) - strlen(tg__states[j].suffix)), s = j;
        if (i >= 0 && s >= 0 && !o) continue; /* state, which a parameters-only load ignores */
        if (i < 0 || (s >= 0 && (tg__states[s].adam != adam || tg__states[s].slot >= ns)))
            return bad(path, "tensor \"%s\" is neither a parameter of the list nor state of %s", names[k],
                       o ? kind_names[opts->kind] : "an optimizer");
        if (same_as(path, names[k], ft[k], ps->ts[i])) return TG_EFORMAT;
        int slot = s < 0 ? -1 : tg__states[s].slot;
        seen[3 * i + 1 + slot] = 1;
        tg_tensor *into = s < 0 ? ps->ts[i] : o->state[2 * i + slot] ? o->state[2 * i + slot] : fresh[2 * i + slot];
        dst[k] = into->data;
    }
    for (int i = 0; i < ps->n; i++)
        for (int j = 0; j <= ns; j++)
            if (!seen[3 * i + j])
                return j ? bad(path, "state tensor \"%s%s\" is missing", ps->names[i], suffix(opts->kind, j - 1))
                         : bad(path, "parameter \"%s\" is missing", ps->names[i]);
    return TG_OK;
}

tg_status tg_checkpoint_load(const char *path, tg_params *ps, tg_optim *o) {
    static const char fn[] = "tg_checkpoint_load";
    if (!path || !ps) return tg__null(fn, path ? "params" : "path");
    if (check_pair(fn, ps, o)) return TG_EINVAL;
    char **names, **kv;
    tg_tensor **ft;
    int n, nkv;
    tg_status st = tg__load_safetensors_meta(fn, path, &names, &ft, &n, &kv, &nkv);
    if (st) return st;
    int np = ps->n;
    void **dst = tg__calloc((size_t)n * sizeof *dst + 1);
    tg_tensor **fresh = dst ? tg__calloc((size_t)np * 2 * sizeof *fresh + 1) : NULL;
    int64_t *t = fresh ? tg__calloc((size_t)np * sizeof *t + 1) : NULL;
    unsigned char *seen = t ? tg__calloc((size_t)np * 3 + 1) : NULL;
    if (!seen) st = tg__fail(TG_ENOMEM, "%s: %s: out of memory for %d tensors", fn, path, n);
    tg_optim_opts opts = o ? o->opts : (tg_optim_opts){0};
    int64_t steps = 0;
    if (!st && o) st = read_optim_meta(path, kv, nkv, ps, o, &opts, &steps, t);
    int ns = o ? n_state(opts.kind, opts.momentum) : 0;
    /* State the file has and the optimizer lacks (it was made without momentum), made before any write */
    for (int i = 0; !st && i < np; i++)
        for (int j = 0; !st && j < ns; j++)
            if (!o->state[2 * i + j]) {
                const tg_tensor *p = ps->ts[i];
                fresh[2 * i + j] = tg_tensor_new(p->dtype, p->ndim, p->shape);
                if (!fresh[2 * i + j]) st = tg__fail(TG_ENOMEM, "%s: %s: out of memory for optimizer state", fn, path);
            }
    if (!st) st = match(path, names, ft, n, ps, o, &opts, fresh, dst, seen);
    if (!st) {
        for (int k = 0; k < n; k++)
            if (dst[k]) memcpy(dst[k], ft[k]->data, (size_t)ft[k]->numel * tg__dsize(ft[k]->dtype));
        if (o) {
            for (int i = 0; i < 2 * np; i++)
                if (fresh && fresh[i]) o->state[i] = fresh[i], fresh[i] = NULL;
            memcpy(o->t, t, (size_t)np * sizeof *t);
            /* A parameter that has stepped had a gradient: the unbroken run steps it even on a step whose
               loss leaves it out (its zeroed gradient, then momentum and decay), so the resumed run must. */
            for (int i = 0; i < np; i++)
                if (t[i] > 0) ps->ts[i]->flags |= TG__GRADDED;
            o->opts = opts;
            o->steps = steps;
        }
    }
    free_state(fresh, np);
    tg__free(dst);
    tg__free(t);
    tg__free(seen);
    tg_safetensors_free(names, ft, n);
    tg_safetensors_free(kv, NULL, 2 * nkv);
    return st;
}
