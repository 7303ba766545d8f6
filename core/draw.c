/* The tape's drawings: tg_tape_print's listing and tg_tape_write_dot's Graphviz graph. */
#include <stdio.h>
#include "arena.h"

/* How print and DOT name an input: the node that made it, or a leaf by its name (tg_tensor_set_name,
   tg_params_add, a layer's role) or else by its kind, and its shape. */
static int input_desc(const tg_tensor *t, char *buf, size_t size) {
    char sb[TG__SHAPE_STR];
    if (t->node >= 0 && t->tape) return snprintf(buf, size, "%%%lld", (long long)t->node);
    const char *name = tg_tensor_name(t);
    return snprintf(buf, size, "%s%s", name ? name : t->flags & TG__PARAM ? "param" : t->tape ? "const" : "leaf",
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
                continue;
            }
            /* A leaf is one node, named after its first use, with an edge to each node that uses it: the T
               steps of an RNN share one Wh, and the picture must show that. Finding the first use scans the
               tape from its start, which stops early for weights (used from the first steps on); tapes that
               Graphviz can lay out are small enough for the rest. */
            int64_t k0 = 0;
            int i0 = 0;
            for (;; k0++) {
                for (i0 = 0; i0 < tape->nodes[k0].n_in && tape->nodes[k0].in[i0] != t; i0++) continue;
                if (i0 < tape->nodes[k0].n_in) break;
            }
            if (k0 == k && i0 == i) {
                const char *name = tg_tensor_name(t);
                fprintf(out, "  l%lld_%d [shape=ellipse, label=\"", (long long)k, i);
                if (name) {
                    dot_string(out, name);
                    fprintf(out, "\\n%s\"];\n", tg__shape_str(t->ndim, t->shape, sb));
                } else {
                    input_desc(t, ib, sizeof ib);
                    fprintf(out, "%s\"];\n", ib);
                }
            }
            fprintf(out, "  l%lld_%d -> n%lld;\n", (long long)k0, i0, (long long)k);
        }
    }
    fprintf(out, "}\n");
    return ferror(out) ? tg__fail(TG_EIO, "tg_tape_write_dot: writing failed") : TG_OK;
}
