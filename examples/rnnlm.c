/* A language model that learns text: words in, the next word's probabilities out.
 *
 *     rnnlm [--corpus FILE] [--words N] [--char] [--model rnn|lstm|gru] [--batch B] [--embed E]
 *           [--hidden H] [--bptt T] [--lr LR] [--epochs K] [--optimizer sgd|adam] [--clip C]
 *           [--dropout P] [--seed S] [--valid F] [--temperature X] [--save FILE] [--resume FILE] [--mpi]
 *
 * The text: the first N words (default 1000) of FILE (default /usr/share/common-licenses/GPL-3, on
 * every Debian machine), lowercased, split on whitespace, each line end a token "<eos>". With --char
 * the tokens are that text's characters (a space is one, a line end "<eos>"). Token ids are given in
 * order of first appearance, as the seed book's preprocess does. --valid F holds the last fraction F
 * of the tokens out of training and reports the model's perplexity on them, computed without
 * recording (no-grad).
 *
 * The model, the seed book's RNNLM, with "Time" layers that are ordinary ops over leading dims:
 *
 *     ids (B,T) -> tg_embedding (B,T,E) -> TimeRNN | TimeLSTM | TimeGRU (B,T,H) -> tg_dropout
 *               -> tg_linear (B,T,V) -> tg_cross_entropy against the next ids (B,T)
 *
 * Truncated BPTT with the book's batch layout: the B streams start at offsets i * floor(n / B) of the
 * training tokens, and each step every stream advances T tokens; the layer is stateful, so its state
 * crosses from one step to the next as a constant (no gradient flows back past T steps). An epoch is
 * floor(n / (B T)) steps. Each epoch starts from a zero state (the book carries it over; starting
 * afresh makes a checkpoint, saved at an epoch's end, all a resumed run needs to continue exactly),
 * and the streams continue where the last epoch left them, as the book's time_idx does. Dropout's
 * mask of step s comes from (seed, s) alone, for the same reason.
 *
 * Each epoch prints its training perplexity (e to the mean cross-entropy) and tokens per second; the
 * end prints a sample: 40 tokens drawn one at a time from softmax(logits / temperature) by tg_sample,
 * the model fed its own output. --save and --resume checkpoint the parameters and the optimizer's
 * state (tg_checkpoint_save); a resumed run ends bit-identical to an unbroken one.
 *
 * --mpi (when tapegrad is built with MPI), under `mpirun -np K`: data parallelism. Each rank trains
 * its shard of the streams, B/K of them (rank r takes streams r B/K ... (r+1) B/K - 1 of the layout
 * above), from rank 0's initial weights (tg_mpi_broadcast_params), and after every backward the ranks
 * average their gradients (tg_mpi_allreduce_grads), so every rank takes the step one process with all
 * B streams would take. Rank 0 prints (the perplexity averaged over the ranks, the tokens/s of all of
 * them) and writes the checkpoint; with --resume every rank loads it and rank 0's values are
 * broadcast.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tapegrad.h>
#ifdef TG_WITH_MPI
#include <tg_mpi.h>
#endif

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "rnnlm: %s failed at line %d: %s (%s)\n", #cond, __LINE__, tg_last_error(),      \
                    tg_status_name(tg_last_status()));                                                       \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the text ---------------------------------------------------------------------------------- */

typedef struct {
    char **words; /* the vocabulary, by id */
    int n_words, cap_words;
    int64_t *ids; /* the text as token ids */
    int64_t n, cap;
} corpus;

static int64_t token_id(corpus *c, const char *w) {
    for (int i = 0; i < c->n_words; i++)
        if (!strcmp(c->words[i], w)) return i;
    if (c->n_words == c->cap_words) {
        c->cap_words = c->cap_words ? 2 * c->cap_words : 256;
        c->words = realloc(c->words, (size_t)c->cap_words * sizeof *c->words);
        CHECK(c->words);
    }
    c->words[c->n_words] = strdup(w);
    CHECK(c->words[c->n_words]);
    return c->n_words++;
}

static void push(corpus *c, const char *w) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 4096;
        c->ids = realloc(c->ids, (size_t)c->cap * sizeof *c->ids);
        CHECK(c->ids);
    }
    c->ids[c->n++] = token_id(c, w);
}

/* The first max_words words of path, lowercased, line ends as "<eos>"; characters with by_char. */
static corpus read_corpus(const char *path, int64_t max_words, int by_char) {
    corpus c = {0};
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        exit(1);
    }
    char word[256];
    int len = 0, ch;
    int64_t words = 0;
    while (words < max_words && (ch = fgetc(f)) != EOF) {
        if (!isspace(ch)) {
            if (len < (int)sizeof word - 1) word[len++] = (char)tolower(ch);
            continue;
        }
        if (len) { /* a word ends */
            word[len] = '\0';
            if (by_char) {
                for (int i = 0; i < len; i++) push(&c, (char[]){word[i], '\0'});
            } else {
                push(&c, word);
            }
            len = 0;
            words++;
        }
        if (ch == '\n') push(&c, "<eos>");
        else if (by_char && c.n && strcmp(c.words[c.ids[c.n - 1]], " ") && strcmp(c.words[c.ids[c.n - 1]], "<eos>"))
            push(&c, " ");
    }
    fclose(f);
    if (c.n < 2) {
        fprintf(stderr, "rnnlm: %s holds fewer than 2 tokens\n", path);
        exit(1);
    }
    return c;
}

/* ---- the model --------------------------------------------------------------------------------- */

typedef enum { RNN, LSTM, GRU } kind;

typedef struct {
    kind kind;
    tg_tensor *embed, *Wo, *bo;
    tg_time_rnn *rnn;
    tg_time_lstm *lstm;
    tg_time_gru *gru;
} model;

/* The book's initialisation: embedding N(0, 0.01^2), weights N(0, 1/fan_in), biases 0. The layer makes
   its weights in the parameter list, which owns them. */
static model model_new(kind k, int64_t V, int64_t E, int64_t H, uint64_t seed, tg_params *params) {
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    model m = {.kind = k};
    CHECK((m.embed = tg_params_create(params, "embed.W", TG_F32, 2, (int64_t[]){V, E})) &&
          tg_tensor_fill_normal(m.embed, 0, 0.01, &rng) == TG_OK);
    if (k == RNN) CHECK(m.rnn = tg_time_rnn_create(params, "rnn", TG_F32, E, H, 1, &rng));
    if (k == LSTM) CHECK(m.lstm = tg_time_lstm_create(params, "rnn", TG_F32, E, H, 1, &rng));
    if (k == GRU) CHECK(m.gru = tg_time_gru_create(params, "rnn", TG_F32, E, H, 1, &rng));
    CHECK(m.Wo = tg_linear_create(params, "out", TG_F32, H, V, &rng, &m.bo));
    return m;
}

static void model_reset(model *m) {
    if (m->rnn) tg_time_rnn_reset_state(m->rnn);
    if (m->lstm) tg_time_lstm_reset_state(m->lstm);
    if (m->gru) tg_time_gru_reset_state(m->gru);
}

/* The weights go with the parameter list. */
static void model_free(model *m) {
    tg_time_rnn_free(m->rnn);
    tg_time_lstm_free(m->lstm);
    tg_time_gru_free(m->gru);
}

/* ids (B,T) -> logits (B,T,V). drop NULL: no dropout (evaluation). */
static tg_tensor *logits(tg_tape *tape, model *m, tg_tensor *ids, double p, tg_rng *drop) {
    tg_tensor *x = tg_embedding(tape, m->embed, ids);
    tg_tensor *h = m->kind == RNN    ? tg_time_rnn_forward(tape, m->rnn, x)
                   : m->kind == LSTM ? tg_time_lstm_forward(tape, m->lstm, x)
                                     : tg_time_gru_forward(tape, m->gru, x);
    if (drop && p > 0) h = tg_dropout(tape, h, p, drop);
    return tg_linear(tape, h, m->Wo, m->bo);
}

/* ---- batches ----------------------------------------------------------------------------------- */

/* Step s of the book's layout over tokens[0..n): stream i of B reads from i * floor(n / B) + s T on
   (mod n - 1), inputs and their next tokens; this batch holds the `count` streams from `first`. */
static void fill_batch(const int64_t *tokens, int64_t n, int64_t B, int64_t first, int64_t count, int64_t T,
                       int64_t s, tg_tensor *xs, tg_tensor *ts) {
    int64_t *x = tg_tensor_data(xs), *t = tg_tensor_data(ts), jump = (n - 1) / B;
    for (int64_t i = 0; i < count; i++)
        for (int64_t k = 0; k < T; k++) {
            int64_t at = ((first + i) * jump + s * T + k) % (n - 1);
            x[i * T + k] = tokens[at];
            t[i * T + k] = tokens[at + 1];
        }
}

/* ---- data parallelism: one process unless --mpi ---------------------------------------------- */

static int rank = 0, ranks = 1, use_mpi = 0;

/* The sum over the ranks of v (v itself in one process). */
static double sum_over_ranks(double v) {
#ifdef TG_WITH_MPI
    if (use_mpi) {
        double all = v;
        CHECK(MPI_Allreduce(&v, &all, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) == MPI_SUCCESS);
        return all;
    }
#endif
    return v;
}

/* Perplexity of tokens[0..n) under the model, B = 1 stream, no recording. */
static double perplexity(tg_tape *tape, model *m, const int64_t *tokens, int64_t n, int64_t T) {
    tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){1, T}), *ts = tg_tensor_new(TG_I64, 2, (int64_t[]){1, T});
    CHECK(xs && ts);
    model_reset(m);
    tg_tape_set_grad_enabled(tape, 0);
    double sum = 0;
    int64_t steps = (n - 1) / T;
    for (int64_t s = 0; s < steps; s++) {
        memcpy(tg_tensor_data(xs), tokens + s * T, (size_t)T * sizeof(int64_t));
        memcpy(tg_tensor_data(ts), tokens + s * T + 1, (size_t)T * sizeof(int64_t));
        tg_tensor *loss = tg_cross_entropy(tape, logits(tape, m, xs, 0, NULL), ts, -1);
        CHECK(loss);
        sum += tg_tensor_get(loss, 0);
        tg_tape_reset(tape);
    }
    tg_tape_set_grad_enabled(tape, 1);
    model_reset(m);
    tg_tensor_free(xs), tg_tensor_free(ts);
    return steps ? exp(sum / (double)steps) : NAN;
}

/* Draws n tokens, starting from `start`, each from softmax(logits / temperature). */
static void sample(tg_tape *tape, model *m, const corpus *c, int by_char, int64_t start, int n, double temperature,
                   tg_rng *rng) {
    tg_tensor *x = tg_tensor_new(TG_I64, 2, (int64_t[]){1, 1});
    CHECK(x);
    model_reset(m);
    tg_tape_set_grad_enabled(tape, 0);
    int64_t tok = start;
    printf("sample (temperature %g):\n    %s", temperature, c->words[tok]);
    for (int i = 0; i < n; i++) {
        ((int64_t *)tg_tensor_data(x))[0] = tok;
        tg_tensor *z = logits(tape, m, x, 0, NULL);
        tg_tensor *next = tg_sample(tape, tg_softmax(tape, tg_scale(tape, z, 1 / temperature), -1), rng);
        CHECK(next);
        tok = ((const int64_t *)tg_tensor_data(next))[0];
        const char *w = c->words[tok];
        if (!strcmp(w, "<eos>")) printf("\n    ");
        else printf(by_char ? "%s" : " %s", w);
        tg_tape_reset(tape);
    }
    printf("\n");
    tg_tape_set_grad_enabled(tape, 1);
    model_reset(m);
    tg_tensor_free(x);
}

/* ---- training ---------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) use_mpi |= !strcmp(argv[i], "--mpi");
    if (use_mpi) {
#ifdef TG_WITH_MPI
        MPI_Init(&argc, &argv);
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &ranks);
        if (rank) CHECK(freopen("/dev/null", "w", stdout)); /* rank 0 speaks for all */
#else
        fprintf(stderr, "rnnlm: --mpi needs tapegrad built with MPI (apt-get install libopenmpi-dev, then meson "
                        "setup -Dmpi=enabled)\n");
        return 2;
#endif
    }
    const char *path = "/usr/share/common-licenses/GPL-3", *save = NULL, *resume = NULL, *model_name = "rnn",
               *opt_name = "sgd";
    int64_t words = 1000, B = 10, E = 100, H = 100, T = 5;
    int epochs = 100, by_char = 0;
    double lr = -1, clip = 0, dropout = 0, valid = 0, temperature = 1;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 1;
        if (!strcmp(a, "--char")) by_char = 1, used = 0;
        else if (!strcmp(a, "--mpi")) used = 0;
        else if (!v) used = -1;
        else if (!strcmp(a, "--corpus")) path = v;
        else if (!strcmp(a, "--words")) words = atoll(v);
        else if (!strcmp(a, "--model")) model_name = v;
        else if (!strcmp(a, "--batch")) B = atoll(v);
        else if (!strcmp(a, "--embed")) E = atoll(v);
        else if (!strcmp(a, "--hidden")) H = atoll(v);
        else if (!strcmp(a, "--bptt")) T = atoll(v);
        else if (!strcmp(a, "--lr")) lr = atof(v);
        else if (!strcmp(a, "--epochs")) epochs = atoi(v);
        else if (!strcmp(a, "--optimizer")) opt_name = v;
        else if (!strcmp(a, "--clip")) clip = atof(v);
        else if (!strcmp(a, "--dropout")) dropout = atof(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--valid")) valid = atof(v);
        else if (!strcmp(a, "--temperature")) temperature = atof(v);
        else if (!strcmp(a, "--save")) save = v;
        else if (!strcmp(a, "--resume")) resume = v;
        else used = -1;
        kind k = !strcmp(model_name, "lstm") ? LSTM : !strcmp(model_name, "gru") ? GRU : RNN;
        if (used < 0 || words < 2 || B < 1 || E < 1 || H < 1 || T < 1 || epochs < 0 || clip < 0 ||
            !(dropout >= 0 && dropout < 1) || !(valid >= 0 && valid < 1) || !(temperature > 0) ||
            (k == RNN && strcmp(model_name, "rnn")) || (strcmp(opt_name, "sgd") && strcmp(opt_name, "adam"))) {
            fprintf(stderr, "usage: %s [--corpus FILE] [--words N] [--char] [--model rnn|lstm|gru] [--batch B] "
                            "[--embed E] [--hidden H] [--bptt T] [--lr LR] [--epochs K] [--optimizer sgd|adam] "
                            "[--clip C] [--dropout P (0 <= P < 1)] [--seed S] [--valid F (0 <= F < 1)] "
                            "[--temperature X] [--save FILE] [--resume FILE] [--mpi]\n", argv[0]);
            return 2;
        }
        i += used;
    }
    kind k = !strcmp(model_name, "lstm") ? LSTM : !strcmp(model_name, "gru") ? GRU : RNN;
    int adam = !strcmp(opt_name, "adam");
    if (lr < 0) lr = adam ? 1e-2 : 0.1;

    corpus c = read_corpus(path, words, by_char);
    int64_t n_valid = (int64_t)((double)c.n * valid), n = c.n - n_valid, V = c.n_words;
    int64_t steps_per_epoch = (n - 1) / (B * T), shard = B / ranks, first = rank * shard;
    if (B % ranks) {
        fprintf(stderr, "rnnlm: %d ranks do not divide B = %lld streams\n", ranks, (long long)B);
        return 2;
    }
    if (steps_per_epoch < 1) {
        fprintf(stderr, "rnnlm: %lld training tokens are too few for B = %lld streams of T = %lld\n", (long long)n,
                (long long)B, (long long)T);
        return 1;
    }
    printf("rnnlm: %lld tokens (%s), vocabulary %lld; %s E %lld H %lld, B %lld T %lld, %s lr %g%s%s, %lld steps "
           "an epoch\n", (long long)c.n, by_char ? "characters" : "words", (long long)V, model_name, (long long)E,
           (long long)H, (long long)B, (long long)T, opt_name, lr, clip > 0 ? ", clipped" : "",
           dropout > 0 ? ", dropout" : "", (long long)steps_per_epoch);

    tg_params *params = tg_params_new();
    CHECK(params);
    model m = model_new(k, V, E, H, seed, params);
    tg_optim_opts opts = tg_optim_defaults(adam ? TG_OPTIM_ADAM : TG_OPTIM_SGD);
    opts.lr = lr;
    tg_optim *optim = tg_optim_new(params, &opts);
    CHECK(optim);
    if (resume) {
        CHECK(tg_checkpoint_load(resume, params, optim) == TG_OK);
        printf("resumed from %s after epoch %lld\n", resume, (long long)(tg_optim_steps(optim) / steps_per_epoch));
    }
    int64_t n_params = 0;
    for (int i = 0; i < tg_params_count(params); i++) n_params += tg_tensor_numel(tg_params_at(params, i, NULL));
    printf("%lld parameters (%.1f KiB of gradients a step)\n", (long long)n_params, (double)n_params * 4 / 1024);
#ifdef TG_WITH_MPI
    /* every rank starts from rank 0's weights (each drew the same from one seed; after a resume each
       loaded the same file: the broadcast makes that a guarantee, not a hope) */
    if (use_mpi) CHECK(tg_mpi_broadcast_params(params, 0, MPI_COMM_WORLD) == TG_OK);
    if (use_mpi) printf("data parallel: %d ranks of %lld streams each\n", ranks, (long long)shard);
#endif

    tg_tensor *xs = tg_tensor_new(TG_I64, 2, (int64_t[]){shard, T}), *ts = tg_tensor_new(TG_I64, 2, (int64_t[]){shard, T});
    tg_tape *tape = tg_tape_new();
    CHECK(xs && ts && tape);
    double ppl = NAN;
    for (int epoch = (int)(tg_optim_steps(optim) / steps_per_epoch); epoch < epochs; epoch++) {
        model_reset(&m);
        double t0 = now_s(), sum = 0;
        for (int64_t s = 0; s < steps_per_epoch; s++) {
            int64_t step = tg_optim_steps(optim);
            fill_batch(c.ids, n, B, first, shard, T, step, xs, ts);
            tg_rng drop; /* each rank its own masks */
            tg_rng_seed(&drop, seed * 0x9E3779B97F4A7C15ull + (uint64_t)step * 1000003u + (uint64_t)rank);
            tg_tensor *loss = tg_cross_entropy(tape, logits(tape, &m, xs, dropout, &drop), ts, -1);
            CHECK(loss);
            sum += tg_tensor_get(loss, 0);
            tg_params_zero_grad(params);
            CHECK(tg_backward(tape, loss, NULL) == TG_OK);
#ifdef TG_WITH_MPI
            if (use_mpi) CHECK(tg_mpi_allreduce_grads(params, MPI_COMM_WORLD) == TG_OK); /* before clipping */
#endif
            if (clip > 0) tg_params_clip_grad_norm(params, clip);
            CHECK(tg_optim_step(optim) == TG_OK);
            tg_tape_reset(tape);
        }
        double dt = now_s() - t0;
        ppl = exp(sum_over_ranks(sum) / ranks / (double)steps_per_epoch);
        dt = sum_over_ranks(dt) / ranks;
        printf("epoch %3d/%d  perplexity %8.2f  %8.0f tokens/s", epoch + 1, epochs, ppl,
               (double)(steps_per_epoch * B * T) / (dt > 0 ? dt : 1e-9));
        if (n_valid > T && (epoch + 1 == epochs || (epoch + 1) % 10 == 0))
            printf("  validation perplexity %.2f", perplexity(tape, &m, c.ids + n, n_valid, T));
        printf("\n");
        fflush(stdout);
    }
    uint64_t fingerprint = 0;
    for (int i = 0; i < tg_params_count(params); i++)
        fingerprint = fingerprint * 31 + tg_tensor_hash(tg_params_at(params, i, NULL));
    printf("final training perplexity %.3f; parameters' fingerprint %016llx\n", ppl, (unsigned long long)fingerprint);
    if (save && rank == 0) {
        CHECK(tg_checkpoint_save(save, params, optim) == TG_OK);
        printf("saved %s\n", save);
    }
    tg_rng srng;
    tg_rng_seed(&srng, seed + 1);
    sample(tape, &m, &c, by_char, c.ids[0], by_char ? 200 : 40, temperature, &srng);

    tg_tape_free(tape);
    tg_tensor_free(xs), tg_tensor_free(ts);
    tg_optim_free(optim);
    model_free(&m);
    tg_params_free(params); /* and every weight with it */
    for (int i = 0; i < c.n_words; i++) free(c.words[i]);
    free(c.words), free(c.ids);
#ifdef TG_WITH_MPI
    if (use_mpi) MPI_Finalize();
#endif
    return 0;
}
