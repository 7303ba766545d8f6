/* Sequence to sequence: an encoder reads a question, a decoder writes the answer, character by character.
 *
 *     seq2seq [--model plain|peeky|attention] [--reverse] [--task addition|dates | --data FILE]
 *             [--examples N] [--epochs E] [--wordvec W] [--hidden H] [--batch B] [--lr LR] [--clip C]
 *             [--seed S] [--plot FILE.png] [--write-data FILE]
 *
 * The seed book's chapters 7 and 8 ("Deep Learning from Scratch 2"), on its character tasks:
 *   addition  "16+75  _91  ": the question, 7 characters, then '_' and the sum, 5 with the '_';
 *   dates     "september 27, 1994           _1994-09-27": a date in one of many human formats, 29
 *             characters, then '_' and its ISO form.
 * Both are generated here (N examples, default 50 000, the book's size); --data FILE reads one example
 * a line in that format instead (all questions one width, all answers one width). The vocabulary is the
 * characters seen; after a seeded shuffle the last 10% is the validation set. --write-data FILE writes the
 * examples in that format, shuffled (for bench/seq2seq_numpy.py, the book's code, to train on).
 *
 * The models, the book's, all on one tape per batch:
 *   plain      embed -> TimeLSTM encoder; its last h starts the decoder (embed -> TimeLSTM -> affine)
 *   peeky      the same, with the encoder's last h also concatenated to every decoder input and to the
 *              affine's input
 *   attention  the decoder's states attend over all the encoder's (tg_attention), and the affine reads
 *              concat(context, decoder state)
 * The decoder is handed the encoder's state with tg_time_lstm_forward_from, a tensor of the same
 * recording: backward reaches the encoder through it. (set_state would copy it and cut the gradient;
 * it refuses a tensor that needs one.) The first batch prints both halves' gradient norms to show it.
 * --reverse feeds the question reversed (the book's trick: the first answer digits then sit close to
 * the question's last ones). Adam, the gradient's norm clipped to C (default 5).
 *
 * Each epoch prints its mean loss, the exact-match accuracy of greedy decoding (tg_argmax, one step at a
 * time) on the validation set, and three decoded validation examples. --plot (attention) draws the
 * attention weights of four validation examples as heat maps (gnuplot), as the book's figure 8-26.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <tapegrad.h>

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "seq2seq: %s failed at line %d: %s (%s)\n", #cond, __LINE__, tg_last_error(),    \
                    tg_status_name(tg_last_status()));                                                       \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the data ---------------------------------------------------------------------------------- */

typedef struct {
    int n, qw, aw; /* examples; question and answer widths (the answer's with its '_') */
    char *q, *a;   /* n * qw and n * aw characters, no terminators */
} dataset;

static void add(dataset *d, int cap, const char *q, const char *a) {
    CHECK(d->n < cap);
    snprintf(d->q + (size_t)d->n * (size_t)d->qw, (size_t)d->qw + 1, "%-*s", d->qw, q);
    snprintf(d->a + (size_t)d->n * (size_t)d->aw, (size_t)d->aw + 1, "%-*s", d->aw, a);
    d->n++;
}

static dataset make_empty(int cap, int qw, int aw) {
    dataset d = {0, qw, aw, malloc((size_t)cap * (size_t)qw + 1), malloc((size_t)cap * (size_t)aw + 1)};
    CHECK(d.q && d.a);
    return d;
}

/* A number of 1 to 3 digits, each length equally likely, as the book's addition.txt. */
static int number(tg_rng *rng) {
    int digits = 1 + (int)(tg_rng_uniform(rng) * 3);
    return (int)(tg_rng_uniform(rng) * (digits == 1 ? 10 : digits == 2 ? 90 : 900)) + (digits == 1 ? 0 : digits == 2 ? 10 : 100);
}

static dataset make_addition(int n, tg_rng *rng) {
    dataset d = make_empty(n, 7, 5);
    char q[16], a[16];
    for (int i = 0; i < n; i++) {
        int x = number(rng), y = number(rng);
        snprintf(q, sizeof q, "%d+%d", x, y);
        snprintf(a, sizeof a, "_%d", x + y);
        add(&d, n, q, a);
    }
    return d;
}

static const char *const MONTHS[12] = {"january", "february", "march",     "april",   "may",      "june",
                                       "july",    "august",   "september", "october", "november", "december"};
static const char *const DAYS[7] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};

/* s in lower case, Title case or UPPER case (how 0, 1, 2), into out. */
static const char *cased(const char *s, int how, char *out) {
    size_t i = 0;
    for (; s[i]; i++) out[i] = (char)(how == 2 || (how == 1 && i == 0) ? s[i] - 'a' + 'A' : s[i]);
    out[i] = '\0';
    return out;
}

/* The book's date.txt: dates 1970-2029 in thirteen formats, months and weekdays in three cases. */
static dataset make_dates(int n, tg_rng *rng) {
    dataset d = make_empty(n, 29, 11);
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    char q[128], a[64], m[16], w[16], mm[8];
    for (int i = 0; i < n; i++) {
        int days = (int)(tg_rng_uniform(rng) * 21915), y = 1970, mo = 0; /* 1970-01-01 .. 2029-12-31 */
        int weekday = (days + 3) % 7;                                   /* 1970-01-01 was a Thursday */
        for (;;) {
            int len = (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 366 : 365;
            if (days < len) break;
            days -= len, y++;
        }
        for (;; mo++) {
            int len = month_days[mo] + (mo == 1 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
            if (days < len) break;
            days -= len;
        }
        int day = days + 1, how = (int)(tg_rng_uniform(rng) * 3);
        const char *M = cased(MONTHS[mo], how, m), *W = cased(DAYS[weekday], how, w);
        snprintf(mm, sizeof mm, "%.3s", M);
        switch ((int)(tg_rng_uniform(rng) * 13)) {
        case 0: snprintf(q, sizeof q, "%s %d, %d", M, day, y); break;
        case 1: snprintf(q, sizeof q, "%s %d %d", M, day, y); break;
        case 2: snprintf(q, sizeof q, "%s %d, %d", mm, day, y); break;
        case 3: snprintf(q, sizeof q, "%d/%d/%02d", mo + 1, day, y % 100); break;
        case 4: snprintf(q, sizeof q, "%d/%d/%d", mo + 1, day, y); break;
        case 5: snprintf(q, sizeof q, "%s, %s %d, %d", W, M, day, y); break;
        case 6: snprintf(q, sizeof q, "%d %s %d", day, M, y); break;
        case 7: snprintf(q, sizeof q, "%d %s %d", day, mm, y); break;
        case 8: snprintf(q, sizeof q, "%02d %s %d", day, mm, y); break;
        case 9: snprintf(q, sizeof q, "%d %s, %d", day, M, y); break;
        case 10: snprintf(q, sizeof q, "%02d.%02d.%02d", day, mo + 1, y % 100); break;
        case 11: snprintf(q, sizeof q, "%d %02d %02d", day, mo + 1, y % 100); break;
        default: snprintf(q, sizeof q, "%s, %d %s %d", W, day, M, y); break;
        }
        snprintf(a, sizeof a, "_%04d-%02d-%02d", y, mo + 1, day);
        add(&d, n, q, a);
    }
    return d;
}

/* FILE: one example a line, question '_' answer; every question one width, every answer one width. */
static dataset read_data(const char *path, int max) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char line[1024];
    dataset d = {0};
    int cap = 0;
    for (int no = 1; fgets(line, sizeof line, f) && d.n < max; no++) {
        line[strcspn(line, "\n")] = '\0';
        char *us = strchr(line, '_');
        if (!line[0]) continue;
        if (!us) {
            fprintf(stderr, "seq2seq: %s:%d: no '_' between question and answer\n", path, no);
            exit(1);
        }
        int qw = (int)(us - line), aw = (int)strlen(us);
        if (!d.q) d = make_empty(cap = max, qw, aw);
        if (qw != d.qw || aw != d.aw) {
            fprintf(stderr, "seq2seq: %s:%d: question %d and answer %d characters wide, the first line's %d and %d\n",
                    path, no, qw, aw, d.qw, d.aw);
            exit(1);
        }
        char answer[1024];
        snprintf(answer, sizeof answer, "%s", us);
        *us = '\0';
        add(&d, cap, line, answer);
    }
    fclose(f);
    if (d.n < 10) {
        fprintf(stderr, "seq2seq: %s holds %d examples; want at least 10\n", path, d.n);
        exit(1);
    }
    return d;
}

/* ---- the vocabulary and batches ---------------------------------------------------------------- */

typedef struct {
    int V;
    int id[256];
    char ch[256];
} vocab;

static vocab vocab_of(const dataset *d) {
    vocab v = {0};
    int seen[256] = {0};
    for (size_t i = 0; i < (size_t)d->n * (size_t)d->qw; i++) seen[(unsigned char)d->q[i]] = 1;
    for (size_t i = 0; i < (size_t)d->n * (size_t)d->aw; i++) seen[(unsigned char)d->a[i]] = 1;
    for (int c = 0; c < 256; c++)
        if (seen[c]) v.id[c] = v.V, v.ch[v.V++] = (char)c;
    return v;
}

/* Rows order[first .. first+B) of d: the questions' ids (B,S) (reversed with rev), the decoder's inputs
   (B,T) = answer[:-1] and its targets (B,T) = answer[1:]. */
static void fill(const dataset *d, const vocab *v, const int *order, int first, int B, int rev, tg_tensor *xs,
                 tg_tensor *din, tg_tensor *tgt) {
    int64_t *x = tg_tensor_data(xs), *di = tg_tensor_data(din), *t = tg_tensor_data(tgt);
    int S = d->qw, T = d->aw - 1;
    for (int i = 0; i < B; i++) {
        const char *q = d->q + (size_t)order[first + i] * (size_t)S, *a = d->a + (size_t)order[first + i] * (size_t)d->aw;
        for (int s = 0; s < S; s++) x[i * S + s] = v->id[(unsigned char)q[rev ? S - 1 - s : s]];
        for (int k = 0; k < T; k++) di[i * T + k] = v->id[(unsigned char)a[k]], t[i * T + k] = v->id[(unsigned char)a[k + 1]];
    }
}

/* ---- the model --------------------------------------------------------------------------------- */

typedef enum { PLAIN, PEEKY, ATTENTION } kind;
static const char *const KIND[] = {"plain", "peeky", "attention"};

typedef struct {
    kind kind;
    int64_t V, W, H;
    tg_tensor *enc_embed, *dec_embed, *out_W, *out_b;
    tg_time_lstm *enc, *dec;
} model;

static tg_tensor *embedding(tg_params *ps, const char *name, tg_rng *rng, int64_t V, int64_t W) {
    tg_tensor *t = tg_params_create(ps, name, TG_F32, 2, (int64_t[]){V, W});
    CHECK(t && tg_tensor_fill_normal(t, 0, 0.01, rng) == TG_OK);
    return t;
}

/* The book's initialisation: embeddings N(0, 0.01^2), weights N(0, 1/fan_in), biases 0. The layers make
   their weights in the parameter list, which owns them. */
static model model_new(kind k, int64_t V, int64_t W, int64_t H, uint64_t seed, tg_params *ps) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    int64_t D = k == PEEKY ? W + H : W, A = k == PLAIN ? H : 2 * H; /* decoder input, affine input */
    model m = {.kind = k, .V = V, .W = W, .H = H};
    m.enc_embed = embedding(ps, "enc.embed", &rng, V, W);
    CHECK(m.enc = tg_time_lstm_create(ps, "enc", TG_F32, W, H, 0, &rng));
    m.dec_embed = embedding(ps, "dec.embed", &rng, V, W);
    CHECK(m.dec = tg_time_lstm_create(ps, "dec", TG_F32, D, H, 0, &rng));
    CHECK(m.out_W = tg_linear_create(ps, "out", TG_F32, A, V, &rng, &m.out_b));
    return m;
}

/* The encoder: hs (B,S,H) and its last h (B,H), a tensor of this recording. */
static tg_tensor *encode(tg_tape *tape, model *m, tg_tensor *xs, tg_tensor **h) {
    return tg_time_lstm_forward_from(tape, m->enc, tg_embedding(tape, m->enc_embed, xs), NULL, NULL, h, NULL);
}

/* h (B,H) repeated over T steps: (B,T,H), peeky's extra input. */
static tg_tensor *repeat(tg_tape *tape, tg_tensor *h, int64_t T) {
    tg_tensor **copies = malloc((size_t)T * sizeof *copies);
    CHECK(copies);
    for (int64_t t = 0; t < T; t++) copies[t] = h;
    tg_tensor *hs = tg_stack(tape, copies, (int)T, 1); /* backward sums the T copies' gradients into h's */
    free(copies);
    return hs;
}

/* The decoder over ids (B,T) from the state (*h, *c: NULL for zeros), both advanced to the last step's:
   logits (B,T,V). With the encoder's hs_enc and h_enc for attention and peeky; *weights (attention)
   receives the weights (B,T,S). */
static tg_tensor *decode(tg_tape *tape, model *m, tg_tensor *ids, tg_tensor *hs_enc, tg_tensor *h_enc,
                         tg_tensor **h, tg_tensor **c, tg_tensor **weights) {
    int64_t T = tg_tensor_shape(ids)[1];
    tg_tensor *x = tg_embedding(tape, m->dec_embed, ids), *peek = NULL;
    if (m->kind == PEEKY) x = tg_concat(tape, (tg_tensor *[]){peek = repeat(tape, h_enc, T), x}, 2, -1);
    tg_tensor *hs = tg_time_lstm_forward_from(tape, m->dec, x, *h, *c, h, c);
    tg_tensor *in = hs;
    if (m->kind == PEEKY) in = tg_concat(tape, (tg_tensor *[]){peek, hs}, 2, -1);
    if (m->kind == ATTENTION) in = tg_concat(tape, (tg_tensor *[]){tg_attention(tape, hs_enc, hs, weights), hs}, 2, -1);
    return tg_linear(tape, in, m->out_W, m->out_b);
}

/* Greedy decoding of a batch: the answer's T ids into out (B*T), from the start character; weights, when
   not NULL, receives each step's attention weights (B,T,S) as floats. */
static void generate(tg_tape *tape, model *m, tg_tensor *xs, int64_t start, int64_t T, int64_t *out, float *weights) {
    int64_t B = tg_tensor_shape(xs)[0], S = tg_tensor_shape(xs)[1];
    tg_tape_set_grad_enabled(tape, 0);
    tg_tensor *h_enc, *hs_enc = encode(tape, m, xs, &h_enc), *h = h_enc, *c = NULL;
    CHECK(hs_enc);
    tg_tensor *ids = tg_tensor_new(TG_I64, 2, (int64_t[]){B, 1});
    CHECK(ids);
    for (int64_t i = 0; i < B; i++) ((int64_t *)tg_tensor_data(ids))[i] = start;
    tg_tensor *next = ids;
    for (int64_t t = 0; t < T; t++) {
        tg_tensor *w = NULL, *logits = decode(tape, m, next, hs_enc, h_enc, &h, &c, weights ? &w : NULL);
        CHECK(next = tg_argmax(tape, logits, -1, 0)); /* (B,1): each row's most likely character */
        for (int64_t i = 0; i < B; i++) out[i * T + t] = ((const int64_t *)tg_tensor_data(next))[i];
        for (int64_t i = 0; weights && i < B; i++)
            for (int64_t s = 0; s < S; s++) weights[(i * T + t) * S + s] = ((const float *)tg_tensor_data(w))[i * S + s];
    }
    tg_tensor_free(ids);
    tg_tape_reset(tape);
    tg_tape_set_grad_enabled(tape, 1);
}

/* Exact-match accuracy of greedy decoding on rows order[first ..) of d; three decoded examples into
   shown (lines, for after the epoch's line). */
static double accuracy(tg_tape *tape, model *m, const dataset *d, const vocab *v, const int *order, int first,
                       int n, int B, int rev, char *shown, size_t size) {
    size_t len = 0;
    shown[0] = '\0';
    int S = d->qw, T = d->aw - 1, right = 0;
    int64_t *out = malloc((size_t)B * (size_t)T * sizeof *out);
    CHECK(out);
    for (int b0 = 0; b0 < n; b0 += B) {
        int nb = n - b0 < B ? n - b0 : B;
        tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){nb, S}), *din = tg_tensor_new(TG_I64, 2, (int64_t[]){nb, T}),
                  *tgt = tg_tensor_new(TG_I64, 2, (int64_t[]){nb, T});
        CHECK(xs && din && tgt);
        fill(d, v, order, first + b0, nb, rev, xs, din, tgt);
        generate(tape, m, xs, v->id['_'], T, out, NULL);
        for (int i = 0; i < nb; i++) {
            int ok = !memcmp(out + (size_t)i * (size_t)T, (int64_t *)tg_tensor_data(tgt) + (size_t)i * (size_t)T,
                             (size_t)T * sizeof *out);
            right += ok;
            if (b0 + i < 3) {
                const char *q = d->q + (size_t)order[first + b0 + i] * (size_t)S;
                const char *a = d->a + (size_t)order[first + b0 + i] * (size_t)d->aw;
                char guess[256];
                for (int k = 0; k < T && k < 255; k++) guess[k] = v->ch[out[i * T + k]], guess[k + 1] = '\0';
                len += (size_t)snprintf(shown + len, len < size ? size - len : 0, "    Q %.*s  T %.*s  %s %s\n", S, q,
                                        T, a + 1, ok ? "\u2611" : "\u2612", guess);
            }
        }
        tg_tensor_free(xs), tg_tensor_free(din), tg_tensor_free(tgt);
    }
    free(out);
    return 100.0 * right / n;
}

/* ---- the attention picture --------------------------------------------------------------------- */

/* gnuplot escapes: a label is one character in double quotes. */
static void label(FILE *f, char c) {
    if (c == '"' || c == '\\') fprintf(f, "\"\\%c\"", c);
    else if (c == ' ') fprintf(f, "\"\u2423\"");
    else fprintf(f, "\"%c\"", c);
}

static void plot(const char *path, tg_tape *tape, model *m, const dataset *d, const vocab *v, const int *order,
                 int first, int rev) {
    int S = d->qw, T = d->aw - 1, K = 4;
    tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){K, S}), *din = tg_tensor_new(TG_I64, 2, (int64_t[]){K, T}),
              *tgt = tg_tensor_new(TG_I64, 2, (int64_t[]){K, T});
    int64_t *out = malloc((size_t)(K * T) * sizeof *out);
    float *w = malloc((size_t)(K * T * S) * sizeof *w);
    CHECK(xs && din && tgt && out && w);
    fill(d, v, order, first, K, rev, xs, din, tgt);
    generate(tape, m, xs, v->id['_'], T, out, w);
    char script[512];
    snprintf(script, sizeof script, "%s.gp", path);
    FILE *f = fopen(script, "w");
    CHECK(f);
    fprintf(f, "set terminal pngcairo size 1400,900\nset output '%s'\nset multiplot layout 2,2 title "
               "'attention weights: output characters (down) against the input (across)'\n"
               "unset colorbox\nset palette grey negative\nset cbrange [0:1]\nset tics scale 0 font ',9'\n", path);
    for (int k = 0; k < K; k++) {
        /* columns in the question's own order, whichever order the encoder read it in */
        const char *q = d->q + (size_t)order[first + k] * (size_t)S;
        fprintf(f, "set xtics (");
        for (int s = 0; s < S; s++) label(f, q[s]), fprintf(f, " %d%s", s, s + 1 < S ? ", " : "");
        fprintf(f, ")\nset ytics (");
        for (int t = 0; t < T; t++) label(f, v->ch[out[k * T + t]]), fprintf(f, " %d%s", t, t + 1 < T ? ", " : "");
        fprintf(f, ")\nset yrange [%d.5:-0.5]\nset xrange [-0.5:%d.5]\nplot '-' matrix with image notitle\n", T - 1, S - 1);
        for (int t = 0; t < T; t++) {
            for (int s = 0; s < S; s++) fprintf(f, "%.4f ", w[(k * T + t) * S + (rev ? S - 1 - s : s)]);
            fprintf(f, "\n");
        }
        fprintf(f, "e\n");
    }
    fprintf(f, "unset multiplot\n");
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", script);
    if (system(cmd) == 0) printf("wrote %s (attention weights of %d validation examples; its script %s)\n", path, K, script);
    else fprintf(stderr, "seq2seq: gnuplot failed or is missing (apt-get install gnuplot-nox); the script is %s\n", script);
    tg_tensor_free(xs), tg_tensor_free(din), tg_tensor_free(tgt);
    free(out), free(w);
}

/* ---- training ---------------------------------------------------------------------------------- */

/* The gradient norm of the parameters whose names start with "enc." (enc 1) or do not (enc 0). */
static double norm_of(tg_params *ps, int enc) {
    double sum = 0;
    for (int i = 0; i < tg_params_count(ps); i++) {
        const char *name;
        tg_tensor *t = tg_params_at(ps, i, &name);
        for (int64_t j = 0; (strncmp(name, "enc.", 4) == 0) == enc && j < tg_tensor_numel(t); j++)
            sum += pow(((const float *)tg_tensor_grad(t))[j], 2);
    }
    return sqrt(sum);
}

int main(int argc, char **argv) {
    const char *model_name = "attention", *task = "addition", *data = NULL, *plot_path = NULL, *write_path = NULL;
    int rev = 0, n = 50000, epochs = -1, B = 128;
    int64_t W = 16, H = -1;
    double lr = 1e-3, clip = 5.0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--reverse")) rev = 1, used = 0;
        else if (!v) used = -1;
        else if (!strcmp(a, "--model")) model_name = v;
        else if (!strcmp(a, "--task")) task = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--examples")) n = atoi(v);
        else if (!strcmp(a, "--epochs")) epochs = atoi(v);
        else if (!strcmp(a, "--wordvec")) W = atoll(v);
        else if (!strcmp(a, "--hidden")) H = atoll(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--lr")) lr = atof(v);
        else if (!strcmp(a, "--clip")) clip = atof(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--plot")) plot_path = v;
        else if (!strcmp(a, "--write-data")) write_path = v;
        else used = -1;
        kind k = !strcmp(model_name, "plain") ? PLAIN : !strcmp(model_name, "peeky") ? PEEKY : ATTENTION;
        if (used < 0 || (k == ATTENTION && strcmp(model_name, "attention")) ||
            (strcmp(task, "addition") && strcmp(task, "dates")) || n < 10 || B < 1 || W < 1 || clip < 0 || !(lr > 0)) {
            fprintf(stderr, "usage: seq2seq [--model plain|peeky|attention] [--reverse] [--task addition|dates | "
                            "--data FILE] [--examples N (>= 10)] [--epochs E] [--wordvec W] [--hidden H] [--batch B] "
                            "[--lr LR] [--clip C] [--seed S] [--plot FILE.png] [--write-data FILE]\n");
            return 2;
        }
        i += used;
    }
    kind k = !strcmp(model_name, "plain") ? PLAIN : !strcmp(model_name, "peeky") ? PEEKY : ATTENTION;
    int dates = !data && !strcmp(task, "dates");
    /* the book's settings: hidden 128 and 25 epochs for addition, 256 and 10 for dates */
    if (H < 1) H = dates ? 256 : 128;
    if (epochs < 0) epochs = dates ? 10 : 25;
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    dataset d = data ? read_data(data, n) : dates ? make_dates(n, &rng) : make_addition(n, &rng);
    vocab v = vocab_of(&d);
    CHECK(v.id['_'] || v.ch[0] == '_');
    int *order = malloc((size_t)d.n * sizeof *order);
    CHECK(order);
    for (int i = 0; i < d.n; i++) order[i] = i;
    for (int i = d.n - 1; i > 0; i--) { /* the seeded shuffle; the last 10% is the validation set */
        int j = (int)(tg_rng_uniform(&rng) * (i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
    if (write_path) {
        FILE *f = fopen(write_path, "w");
        if (!f) {
            perror(write_path);
            return 1;
        }
        for (int i = 0; i < d.n; i++)
            fprintf(f, "%.*s%.*s\n", d.qw, d.q + (size_t)order[i] * (size_t)d.qw, d.aw, d.a + (size_t)order[i] * (size_t)d.aw);
        if (fclose(f)) {
            perror(write_path);
            return 1;
        }
        printf("wrote %d examples to %s\n", d.n, write_path);
    }
    int n_valid = d.n / 10, n_train = d.n - n_valid, S = d.qw, T = d.aw - 1;
    if (B > n_train) B = n_train;
    printf("seq2seq: %s model%s on %s: %d training and %d validation examples, %d characters, question %d and "
           "answer %d wide; wordvec %lld, hidden %lld, batch %d, Adam %g, clip %g\n", KIND[k], rev ? " (reversed input)" : "",
           data ? data : task, n_train, n_valid, v.V, S, T, (long long)W, (long long)H, B, lr, clip);

    tg_params *ps = tg_params_new();
    CHECK(ps);
    model m = model_new(k, v.V, W, H, seed + 1, ps);
    tg_optim_opts opts = tg_optim_defaults(TG_OPTIM_ADAM);
    opts.lr = lr;
    tg_optim *optim = tg_optim_new(ps, &opts);
    tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){B, S}), *din = tg_tensor_new(TG_I64, 2, (int64_t[]){B, T}),
              *tgt = tg_tensor_new(TG_I64, 2, (int64_t[]){B, T});
    tg_tape *tape = tg_tape_new();
    CHECK(optim && xs && din && tgt && tape);
    int batches = n_train / B, progress = isatty(2); /* a progress line on a terminal only */
    for (int epoch = 0; epoch < epochs; epoch++) {
        double t0 = now_s(), sum = 0;
        for (int i = n_train - 1; i > 0; i--) { /* a new order of the training rows each epoch */
            int j = (int)(tg_rng_uniform(&rng) * (i + 1)), t = order[i];
            order[i] = order[j], order[j] = t;
        }
        for (int b = 0; b < batches; b++) {
            fill(&d, &v, order, b * B, B, rev, xs, din, tgt);
            /* One tape for the whole model: the decoder starts from h_enc, the encoder's own output. */
            tg_tensor *h_enc, *hs_enc = encode(tape, &m, xs, &h_enc), *h = h_enc, *c = NULL;
            tg_tensor *loss = tg_cross_entropy(tape, decode(tape, &m, din, hs_enc, h_enc, &h, &c, NULL), tgt, -1);
            CHECK(loss);
            sum += tg_tensor_get(loss, 0);
            tg_params_zero_grad(ps);
            CHECK(tg_backward(tape, loss, NULL) == TG_OK);
            if (epoch == 0 && b == 0)
                printf("first batch: gradient norm %.3g in the encoder, %.3g in the decoder (forward_from hands "
                       "the encoder's state over on the tape, so the gradient reaches it)\n",
                       norm_of(ps, 1), norm_of(ps, 0));
            if (clip > 0) tg_params_clip_grad_norm(ps, clip);
            CHECK(tg_optim_step(optim) == TG_OK);
            tg_tape_reset(tape);
            if (b % 50 == 49 && progress) fprintf(stderr, "\r  batch %d/%d loss %.4f  ", b + 1, batches, sum / (b + 1));
        }
        double dt = now_s() - t0;
        if (progress) fprintf(stderr, "\r%40s\r", "");
        char shown[2048];
        double acc = accuracy(tape, &m, &d, &v, order, n_train, n_valid, B, rev, shown, sizeof shown);
        printf("epoch %d/%d loss %.4f val acc %.2f%% (%.1f s)\n%s", epoch + 1, epochs, sum / (batches ? batches : 1), acc,
               dt, shown);
        fflush(stdout);
    }
    if (plot_path && k == ATTENTION) plot(plot_path, tape, &m, &d, &v, order, n_train, rev);
    else if (plot_path) fprintf(stderr, "seq2seq: --plot draws attention weights: use it with --model attention\n");

    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(din), tg_tensor_free(tgt);
    tg_optim_free(optim);
    tg_time_lstm_free(m.enc), tg_time_lstm_free(m.dec);
    tg_params_free(ps); /* and every weight with it */
    free(order), free(d.q), free(d.a);
    return 0;
}
