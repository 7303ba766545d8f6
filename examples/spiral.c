/* A classifier to watch learn: the three-class spiral of CS231n, by a two-layer network.
 *
 *     spiral [DIR] [--epochs N] [--hidden H] [--lr LR] [--seed S] [--save FILE] [--resume FILE]
 *            [--expect-accuracy PERCENT]
 *
 * The data: K = 3 arms of N = 100 points each, arm k at angles 4k ... 4k + 4 (radians) with N(0, 0.2)
 * noise, radius 0 ... 1. No straight line separates them; a network with one hidden layer of ReLUs
 * bends its boundaries around the arms:
 *
 *     logits = relu(x @ W1 + b1) @ W2 + b2        x (B,2), W1 (2,H), b1 (H,), W2 (H,3), b2 (3,)
 *     loss   = cross_entropy(logits, class)       the mean over the minibatch
 *
 * trained with Adam on shuffled minibatches of 30 points. Each epoch prints the loss, the training
 * accuracy (a no-grad pass over all points) and the steps per second. At the end DIR (default ".")
 * gets spiral_points.csv (x, y, class), spiral_grid.csv (the class the network predicts on a 200 x 200
 * grid) and, when gnuplot is installed, spiral.png: the decision regions with the points on top.
 * --save writes a checkpoint (parameters and Adam's state); --resume continues from one, up to
 * --epochs in all, exactly as if the run had never stopped (the parameters' fingerprint, printed at the
 * end, says so). --expect-accuracy makes the run fail (exit 1) below that training accuracy: the test
 * suite's use.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <tapegrad.h>

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "spiral: %s failed at line %d: %s (%s)\n", #cond, __LINE__, tg_last_error(),     \
                    tg_status_name(tg_last_status()));                                                       \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

enum { K = 3, PER_CLASS = 100, N = K * PER_CLASS, BATCH = 30, GRID = 200 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- the data ---- */

/* X (N,2) f64 and y (N,) i64, the CS231n spiral, drawn from its own stream so it never changes with
   the model's seed. */
static void make_spiral(tg_tensor *X, tg_tensor *y) {
    tg_rng rng;
    tg_rng_seed(&rng, 0x5B1AA1);
    double *x = tg_tensor_data(X);
    int64_t *c = tg_tensor_data(y);
    for (int k = 0; k < K; k++)
        for (int i = 0; i < PER_CLASS; i++) {
            int n = k * PER_CLASS + i;
            double r = (double)i / (PER_CLASS - 1), t = 4.0 * k + 4.0 * i / (PER_CLASS - 1) + 0.2 * tg_rng_normal(&rng);
            x[2 * n] = r * sin(t);
            x[2 * n + 1] = r * cos(t);
            c[n] = k;
        }
}

/* ---- the model ---- */

typedef struct {
    tg_tensor *W1, *b1, *W2, *b2;
} model;

static tg_tensor *logits(tg_tape *tape, const model *m, tg_tensor *x) {
    tg_tensor *h = tg_relu(tape, tg_linear(tape, x, m->W1, m->b1));
    return tg_linear(tape, h, m->W2, m->b2);
}

/* The predicted class of each row of logits (B,K). */
static void argmax_rows(tg_tensor *z, int64_t *out) {
    const double *p = tg_tensor_data(z);
    int64_t rows = tg_tensor_shape(z)[0];
    for (int64_t r = 0; r < rows; r++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[r * K + k] > p[r * K + best]) best = k;
        out[r] = best;
    }
}

/* The training accuracy, from a pass over every point without recording. */
static double accuracy(tg_tape *tape, const model *m, tg_tensor *X, tg_tensor *y) {
    int64_t pred[N];
    tg_tape_set_grad_enabled(tape, 0);
    tg_tensor *z = logits(tape, m, X);
    CHECK(z);
    argmax_rows(z, pred);
    tg_tape_set_grad_enabled(tape, 1);
    tg_tape_reset(tape);
    int right = 0;
    const int64_t *c = tg_tensor_data(y);
    for (int n = 0; n < N; n++) right += pred[n] == c[n];
    return (double)right / N;
}

/* ---- the pictures ---- */

static void write_outputs(const char *dir, tg_tape *tape, const model *m, tg_tensor *X, tg_tensor *y) {
    char points[4096], grid[4096], gp[4096], png[4096];
    snprintf(points, sizeof points, "%s/spiral_points.csv", dir);
    snprintf(grid, sizeof grid, "%s/spiral_grid.csv", dir);
    snprintf(gp, sizeof gp, "%s/spiral.gp", dir);
    snprintf(png, sizeof png, "%s/spiral.png", dir);
    FILE *f = fopen(points, "w");
    CHECK(f);
    fprintf(f, "x,y,class\n");
    const double *x = tg_tensor_data(X);
    const int64_t *c = tg_tensor_data(y);
    for (int n = 0; n < N; n++) fprintf(f, "%.6f,%.6f,%lld\n", x[2 * n], x[2 * n + 1], (long long)c[n]);
    CHECK(fclose(f) == 0);

    /* every grid point in one no-grad pass: (GRID*GRID, 2) -> (GRID*GRID, 3) */
    tg_tensor *G = tg_tensor_new(TG_F64, 2, (int64_t[]){GRID * GRID, 2});
    CHECK(G);
    double *g = tg_tensor_data(G);
    for (int i = 0; i < GRID; i++)
        for (int j = 0; j < GRID; j++) {
            g[2 * (i * GRID + j)] = -1.1 + 2.2 * j / (GRID - 1);
            g[2 * (i * GRID + j) + 1] = -1.1 + 2.2 * i / (GRID - 1);
        }
    int64_t *pred = malloc(sizeof *pred * GRID * GRID);
    CHECK(pred);
    tg_tape_set_grad_enabled(tape, 0);
    tg_tensor *z = logits(tape, m, G);
    CHECK(z);
    argmax_rows(z, pred);
    tg_tape_set_grad_enabled(tape, 1);
    tg_tape_reset(tape);
    f = fopen(grid, "w");
    CHECK(f);
    fprintf(f, "x,y,class\n");
    for (int k = 0; k < GRID * GRID; k++) fprintf(f, "%.5f,%.5f,%lld\n", g[2 * k], g[2 * k + 1], (long long)pred[k]);
    CHECK(fclose(f) == 0);
    free(pred);
    tg_tensor_free(G);
    printf("wrote %s and %s\n", points, grid);

    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("(gnuplot is not installed: no PNG; the CSVs have the numbers)\n");
        return;
    }
    if (strchr(dir, '\'')) {
        printf("(no PNG: the output folder's name contains a quote)\n");
        return;
    }
    f = fopen(gp, "w");
    CHECK(f);
    fprintf(f,
            "set terminal png size 720,720\nset output '%s'\nset datafile separator ','\n"
            "set title 'Spiral: decision regions of relu(x W1 + b1) W2 + b2, and the training points'\n"
            "set size square\nset xrange [-1.1:1.1]\nset yrange [-1.1:1.1]\nunset colorbox\nset key off\n"
            "set palette defined (0 '#fbb4ae', 1 '#b3cde3', 2 '#ccebc5')\nset cbrange [0:2]\n"
            "plot '%s' skip 1 using 1:2:3 with points pt 5 ps 0.5 lc palette, \\\n"
            "     '%s' skip 1 using 1:($3 == 0 ? $2 : 1/0) with points pt 7 ps 0.9 lc rgb '#d7191c', \\\n"
            "     '%s' skip 1 using 1:($3 == 1 ? $2 : 1/0) with points pt 7 ps 0.9 lc rgb '#2c7bb6', \\\n"
            "     '%s' skip 1 using 1:($3 == 2 ? $2 : 1/0) with points pt 7 ps 0.9 lc rgb '#1a9641'\n",
            png, grid, points, points, points);
    CHECK(fclose(f) == 0);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "gnuplot '%s'", gp);
    if (system(cmd) == 0) printf("wrote %s\n", png);
    else printf("(gnuplot failed: no PNG)\n");
}

/* ---- training ---- */

int main(int argc, char **argv) {
    const char *dir = ".", *save = NULL, *resume = NULL;
    int epochs = 60, hidden = 100;
    double lr = 1e-2;
    uint64_t seed = 1;
    double expect = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--epochs") && v && atoi(v) > 0) epochs = atoi(v), i++;
        else if (!strcmp(a, "--hidden") && v && atoi(v) > 0) hidden = atoi(v), i++;
        else if (!strcmp(a, "--lr") && v && atof(v) > 0) lr = atof(v), i++;
        else if (!strcmp(a, "--seed") && v) seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--save") && v) save = v, i++;
        else if (!strcmp(a, "--resume") && v) resume = v, i++;
        else if (!strcmp(a, "--expect-accuracy") && v) expect = atof(v), i++;
        else if (a[0] != '-') dir = a;
        else {
            fprintf(stderr, "usage: %s [DIR] [--epochs N] [--hidden H] [--lr LR] [--seed S] [--save FILE] "
                            "[--resume FILE] [--expect-accuracy PERCENT]\n", argv[0]);
            return 2;
        }
    }

    mkdir(dir, 0777); /* may exist already; a folder that cannot be made fails at the first file */
    tg_tensor *X = tg_tensor_new(TG_F64, 2, (int64_t[]){N, 2}), *y = tg_tensor_new(TG_I64, 1, (int64_t[]){N});
    CHECK(X && y);
    make_spiral(X, y);

    /* Parameters: Xavier-uniform weights, zero biases; registered by name for Adam and checkpoints. */
    model m = {tg_param_new(TG_F64, 2, (int64_t[]){2, hidden}), tg_param_new(TG_F64, 1, (int64_t[]){hidden}),
               tg_param_new(TG_F64, 2, (int64_t[]){hidden, K}), tg_param_new(TG_F64, 1, (int64_t[]){K})};
    tg_rng rng;
    tg_rng_seed(&rng, seed);
    CHECK(m.W1 && m.b1 && m.W2 && m.b2);
    CHECK(tg_init_xavier(m.W1, &rng) == TG_OK && tg_init_xavier(m.W2, &rng) == TG_OK);
    tg_params *params = tg_params_new();
    CHECK(params);
    CHECK(tg_params_add(params, "W1", m.W1) == TG_OK && tg_params_add(params, "b1", m.b1) == TG_OK &&
          tg_params_add(params, "W2", m.W2) == TG_OK && tg_params_add(params, "b2", m.b2) == TG_OK);
    tg_optim_opts opts = tg_optim_defaults(TG_OPTIM_ADAM);
    opts.lr = lr;
    tg_optim *adam = tg_optim_new(params, &opts);
    CHECK(adam);

    int steps_per_epoch = N / BATCH, first_epoch = 0;
    if (resume) {
        CHECK(tg_checkpoint_load(resume, params, adam) == TG_OK);
        first_epoch = (int)(tg_optim_steps(adam) / steps_per_epoch);
        printf("resumed from %s after epoch %d\n", resume, first_epoch);
    }

    /* One minibatch's inputs and targets, refilled in place each step. */
    tg_tensor *xb = tg_tensor_new(TG_F64, 2, (int64_t[]){BATCH, 2}), *yb = tg_tensor_new(TG_I64, 1, (int64_t[]){BATCH});
    CHECK(xb && yb);
    tg_tape *tape = tg_tape_new();
    CHECK(tape);
    int order[N];
    double acc = 0;
    for (int epoch = first_epoch; epoch < epochs; epoch++) {
        /* The shuffle of epoch e comes from (seed, e) alone, so a resumed run sees the same batches. */
        tg_rng shuffle;
        tg_rng_seed(&shuffle, seed * 1000003u + (uint64_t)epoch);
        for (int n = 0; n < N; n++) order[n] = n;
        for (int n = N - 1; n > 0; n--) {
            int k = (int)(tg_rng_next(&shuffle) % (uint64_t)(n + 1)), t = order[n];
            order[n] = order[k], order[k] = t;
        }
        double t0 = now_s(), loss_sum = 0;
        for (int s = 0; s < steps_per_epoch; s++) {
            double *xd = tg_tensor_data(xb), *Xd = tg_tensor_data(X);
            int64_t *yd = tg_tensor_data(yb), *Yd = tg_tensor_data(y);
            for (int b = 0; b < BATCH; b++) {
                int n = order[s * BATCH + b];
                xd[2 * b] = Xd[2 * n], xd[2 * b + 1] = Xd[2 * n + 1], yd[b] = Yd[n];
            }
            tg_tensor *loss = tg_cross_entropy(tape, logits(tape, &m, xb), yb, -1);
            CHECK(loss);
            loss_sum += tg_tensor_get(loss, 0);
            tg_params_zero_grad(params);
            CHECK(tg_backward(tape, loss, NULL) == TG_OK);
            CHECK(tg_optim_step(adam) == TG_OK);
            tg_tape_reset(tape);
        }
        double dt = now_s() - t0;
        acc = accuracy(tape, &m, X, y);
        printf("epoch %3d/%d  loss %.4f  train accuracy %5.1f%%  %6.0f steps/s\n", epoch + 1, epochs,
               loss_sum / steps_per_epoch, 100 * acc, steps_per_epoch / (dt > 0 ? dt : 1e-9));
    }
    if (first_epoch >= epochs) acc = accuracy(tape, &m, X, y);
    uint64_t fingerprint = 0;
    for (int i = 0; i < tg_params_count(params); i++) fingerprint = fingerprint * 31 + tg_tensor_hash(tg_params_at(params, i, NULL));
    printf("final training accuracy: %.1f%%; parameters' fingerprint %016llx\n", 100 * acc, (unsigned long long)fingerprint);
    if (save) {
        CHECK(tg_checkpoint_save(save, params, adam) == TG_OK);
        printf("saved %s\n", save);
    }
    write_outputs(dir, tape, &m, X, y);

    tg_tape_free(tape);
    tg_optim_free(adam);
    tg_params_free(params);
    tg_tensor_free(m.W1), tg_tensor_free(m.b1), tg_tensor_free(m.W2), tg_tensor_free(m.b2);
    tg_tensor_free(X), tg_tensor_free(y), tg_tensor_free(xb), tg_tensor_free(yb);
    if (100 * acc < expect) {
        fprintf(stderr, "spiral: training accuracy %.1f%% is below the expected %.1f%%\n", 100 * acc, expect);
        return 1;
    }
    return 0;
}
