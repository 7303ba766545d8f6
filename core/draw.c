/* The tape's drawings: tg_tape_print's listing and tg_tape_write_dot's Graphviz graph. */
#include <stdio.h>
#include "arena.h"

/* How print and DOT name an input: the node that made it, or what kind of leaf it is. */
static int input_desc(const tg_tensor *t, char *buf, size_t size) {
    char sb[TG__SHAPE_STR];
    if (t->node >= 0 && t->tape) return snprintf(buf, size, "%%%lld", (long long)t->node);
    return snprintf(buf, size, "%s%s", t->flags & TG__PARAM ? "param" : t->tape ? "const" : "leaf",
                    tg__shape_str(t->ndim, t->shape, sb));
}

/* A node's arguments as the op's table names them, "axis=1 start=0 stop=3"; "" when it has none. */
static const char *args_str(const tg__node *n, char *buf, size_t size) {
    size_t len = 0;
    buf[0] = '\0';
    for (int k = 0; k < 4 && len < size; k++)
        if (n->op->iarg[k])
            len += (size_t)snprintf(buf + len, size - len, "%s%s=%lld", len ? " " : "", n->op->iarg[k],
                                    (long long)n->args.i[k]);
    for (int k = 0; k < 2 && len < size; k++)
        if (n->op->farg[k])
            len += (size_t)snprintf(buf + len, size - len, "%s%s=%g", len ? " " : "", n->op->farg[k], n->args.f[k]);
    return buf;
}

tg_status tg_tape_print(const tg_tape *tape, FILE *out) {
    if (!tape || !out) return tg__null("tg_tape_print", tape ? "out" : "tape");
    char sb[TG__SHAPE_STR], ib[96], ab[160];
    fprintf(out, "tape: %lld nodes\n", (long long)tape->n_nodes);
    for (int64_t k = 0; k < tape->n_nodes; k++) {
        const tg__node *n = &tape->nodes[k];
        fprintf(out, "%%%-4lld %-10s (", (long long)k, tg__node_name(n));
        for (int i = 0; i < n->n_in; i++) {
            input_desc(n->in[i], ib, sizeof ib);
            fprintf(out, "%s%s", i ? ", " : "", ib);
        }
        fprintf(out, ") -> %s", tg__shape_str(n->out->ndim, n->out->shape, sb));
        if (args_str(n, ab, sizeof ab)[0]) fprintf(out, "  %s", ab);
        int kept = tg__n_kept(n), saved = n->n_saved - kept;
        for (int i = 0; i < n->n_saved; i++)
            fprintf(out, "%s%s", i == 0 && saved ? "  saved: " : i == saved ? "  kept: " : " ",
                    tg__shape_str(n->saved[i]->ndim, n->saved[i]->shape, sb));
        fputc('\n', out);
    }
    return ferror(out) ? tg__fail(TG_EIO, "tg_tape_print: writing failed") : TG_OK;
}

/* A custom op's name is the user's: quotes and backslashes are escaped so that it stays one label. */
static void dot_string(FILE *out, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if (*s == '\n') fputs("\\n", out);
        else if ((unsigned char)*s >= 0x20) fputc(*s, out);
    }
}

tg_status tg_tape_write_dot(const tg_tape *tape, FILE *out) {
    if (!tape || !out) return tg__null("tg_tape_write_dot", tape ? "out" : "tape");
    char sb[TG__SHAPE_STR], ib[96], ab[160];
    fprintf(out, "digraph tape {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
    for (int64_t k = 0; k < tape->n_nodes; k++) {
        const tg__node *n = &tape->nodes[k];
        fprintf(out, "  n%lld [shape=box, label=\"%%%lld ", (long long)k, (long long)k);
        dot_string(out, tg__node_name(n));
        fprintf(out, "\\n%s", tg__shape_str(n->out->ndim, n->out->shape, sb));
        if (args_str(n, ab, sizeof ab)[0]) fprintf(out, "\\n%s", ab);
        fprintf(out, "\"];\n");
        for (int i = 0; i < n->n_in; i++) {
            const tg_tensor *t = n->in[i];
            if (t->node >= 0 && t->tape) {
                fprintf(out, "  n%lld -> n%lld;\n", (long long)t->node, (long long)k);
            } else {
                /* Leaves are drawn once per use: a graph of a T-step RNN stays legible that way. */
                input_desc(t, ib, sizeof ib);
                fprintf(out, "  l%lld_%d [shape=ellipse, label=\"%s\"];\n  l%lld_%d -> n%lld;\n", (long long)k, i,
                        ib, (long long)k, i, (long long)k);
            }
        }
    }
    fprintf(out, "}\n");
    return ferror(out) ? tg__fail(TG_EIO, "tg_tape_write_dot: writing failed") : TG_OK;
}
