/* The API contracts of the issues, redeclared exactly as written there: a compatible redeclaration
   compiles, a changed signature does not. Built by the install check, against the installed headers. */
#include <tapegrad.h>

/* issue: core */
typedef struct tg_tensor tg_tensor;
typedef struct tg_tape tg_tape;

tg_tensor *tg_tensor_new(tg_dtype dtype, int ndim, const int64_t *shape); /* zeros, no gradient */
tg_tensor *tg_param_new(tg_dtype dtype, int ndim, const int64_t *shape);  /* zeros, has a gradient */
void       tg_tensor_free(tg_tensor *t);
tg_dtype   tg_tensor_dtype(const tg_tensor *t);
int        tg_tensor_ndim(const tg_tensor *t);
const int64_t *tg_tensor_shape(const tg_tensor *t);
int64_t    tg_tensor_numel(const tg_tensor *t);
void      *tg_tensor_data(tg_tensor *t);   /* float * or double *, row-major */
void      *tg_tensor_grad(tg_tensor *t);   /* same layout; NULL when it has no gradient */
void       tg_zero_grad(tg_tensor *t);
uint64_t   tg_tensor_hash(const tg_tensor *t); /* XXH3-64 of dtype, shape and data */

tg_tape   *tg_tape_new(void);
void       tg_tape_reset(tg_tape *tape);
void       tg_tape_free(tg_tape *tape);
#define    TG_CHECK_SAVED 1u  /* fingerprint saved tensors; on by default */
void       tg_tape_set_checks(tg_tape *tape, unsigned flags); /* 0: no checks */
tg_status  tg_backward(tg_tape *tape, tg_tensor *out, const tg_tensor *grad_out); /* NULL: out is one element, seeded with 1 */

tg_tensor *tg_matmul(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_add(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_tanh(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_slice(tg_tape *tape, tg_tensor *x, int axis, int64_t start, int64_t stop);
tg_tensor *tg_select(tg_tape *tape, tg_tensor *x, int axis, int64_t index);
tg_tensor *tg_stack(tg_tape *tape, tg_tensor *const *xs, int n, int axis);
tg_tensor *tg_sum(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_detach(tg_tape *tape, tg_tensor *x);

tg_status   tg_last_status(void);
const char *tg_last_error(void);
void        tg_clear_error(void);

typedef tg_tensor *(*tg_fn)(tg_tape *tape, tg_tensor *const *inputs, void *ctx);
tg_gradcheck_opts tg_gradcheck_defaults(void);
int  tg_gradcheck(tg_fn f, void *ctx, tg_tensor *const *inputs, int n_inputs,
                  const tg_gradcheck_opts *opts, tg_gradcheck_report *report); /* 1 pass, 0 fail */
void tg_gradcheck_print(const tg_gradcheck_report *report, FILE *out);

/* issue: RNN and TimeRNN */
tg_tensor *tg_rnn_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev,
                       tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);
typedef struct tg_time_rnn tg_time_rnn;
tg_time_rnn *tg_time_rnn_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful); /* borrows params */
void         tg_time_rnn_free(tg_time_rnn *layer);
tg_tensor   *tg_time_rnn_forward(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs); /* (N,T,D) -> (N,T,H) */
tg_status    tg_time_rnn_set_state(tg_time_rnn *layer, const tg_tensor *h);        /* copies (N,H) */
void         tg_time_rnn_reset_state(tg_time_rnn *layer);
tg_tensor   *tg_time_rnn_dh(tg_time_rnn *layer); /* (N,H) gradient of the initial state, after backward */
tg_status tg_time_rnn_ref(tg_tensor *xs, tg_tensor *h0, tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b,
                          tg_tensor *dhs, tg_tensor *hs, tg_tensor *dxs, tg_tensor *dWx,
                          tg_tensor *dWh, tg_tensor *db, tg_tensor *dh0);
typedef tg_status (*tg_ref_fn)(tg_tensor *const *inputs, const tg_tensor *grad_out,
                               tg_tensor *const *grads, void *ctx);
int tg_gradcheck_ref(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *inputs, int n_inputs,
                     const tg_gradcheck_opts *opts, tg_gradcheck_report *vs_ref,
                     tg_gradcheck_report *vs_numeric); /* 1 when both pass */
tg_status tg_retain_grad(tg_tape *tape, tg_tensor *t);
tg_status tg_tape_print(const tg_tape *tape, FILE *out);
tg_status tg_tape_write_dot(const tg_tape *tape, FILE *out);

/* issue: custom ops and files */
tg_tensor *tg_custom(tg_tape *tape, const tg_op_def *op, tg_tensor *const *inputs, int n_inputs,
                     void *user);
tg_status tg_save_npy(const char *path, tg_tensor *t);
tg_tensor *tg_load_npy(const char *path);                       /* caller owns; NULL on error */
tg_status tg_save_safetensors(const char *path, const char *const *names, tg_tensor *const *tensors, int n);
tg_status tg_load_safetensors(const char *path, char ***names_out, tg_tensor ***tensors_out, int *n_out);
void      tg_safetensors_free(char **names, tg_tensor **tensors, int n);
#define TG_CHECK_NONFINITE 2u

/* issue: ops for real models */
tg_tensor *tg_div(tg_tape *tape, tg_tensor *a, tg_tensor *b);
tg_tensor *tg_neg(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_add_scalar(tg_tape *tape, tg_tensor *x, double c);
tg_tensor *tg_exp(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_log(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sqrt(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sigmoid(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_relu(tg_tape *tape, tg_tensor *x);
tg_tensor *tg_sum_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_mean_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_max_axis(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_transpose(tg_tape *tape, tg_tensor *x, int axis0, int axis1);
tg_tensor *tg_concat(tg_tape *tape, tg_tensor *const *xs, int n, int axis);
tg_tensor *tg_linear(tg_tape *tape, tg_tensor *x, tg_tensor *W, tg_tensor *b);
tg_tensor *tg_embedding(tg_tape *tape, tg_tensor *table, tg_tensor *indices);
tg_tensor *tg_softmax(tg_tape *tape, tg_tensor *x, int axis);
tg_tensor *tg_log_softmax(tg_tape *tape, tg_tensor *x, int axis);
tg_tensor *tg_cross_entropy(tg_tape *tape, tg_tensor *logits, tg_tensor *targets, int64_t ignore_index);

void      tg_rng_seed(tg_rng *rng, uint64_t seed);
double    tg_rng_uniform(tg_rng *rng);                   /* [0, 1) */
double    tg_rng_normal(tg_rng *rng);                    /* N(0, 1) */
tg_status tg_tensor_fill_normal(tg_tensor *t, double mean, double std, tg_rng *rng);
tg_status tg_init_xavier(tg_tensor *W, tg_rng *rng);
tg_tensor *tg_dropout(tg_tape *tape, tg_tensor *x, double p, tg_rng *rng);

void      tg_tape_set_grad_enabled(tg_tape *tape, int enabled);
tg_status tg_set_error(tg_status status, const char *fmt, ...);   /* returns status */
tg_status tg_tensor_print(const tg_tensor *t, FILE *out);

/* issue: training loop */
typedef struct tg_params tg_params;
tg_params *tg_params_new(void);
void       tg_params_free(tg_params *params);          /* frees the list, never the tensors */
tg_status  tg_params_add(tg_params *params, const char *name, tg_tensor *param);
int        tg_params_count(const tg_params *params);
tg_tensor *tg_params_at(const tg_params *params, int i, const char **name);   /* name may be NULL */
tg_tensor *tg_params_find(const tg_params *params, const char *name);
void       tg_params_zero_grad(tg_params *params);
double     tg_params_grad_norm(const tg_params *params);
double     tg_params_clip_grad_norm(tg_params *params, double max_norm);

tg_optim_opts tg_optim_defaults(tg_optim_kind kind);
typedef struct tg_optim tg_optim;
tg_optim  *tg_optim_new(tg_params *params, const tg_optim_opts *opts);
tg_status  tg_optim_step(tg_optim *optim);
void       tg_optim_set_lr(tg_optim *optim, double lr);
void       tg_optim_free(tg_optim *optim);

tg_status  tg_checkpoint_save(const char *path, const tg_params *params, const tg_optim *optim);
tg_status  tg_checkpoint_load(const char *path, tg_params *params, tg_optim *optim);  /* optim may be NULL */

/* issue: LSTM and GRU */
tg_tensor *tg_lstm_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev, tg_tensor *c_prev,
                        tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, tg_tensor **c_next); /* returns h_next */
typedef struct tg_time_lstm tg_time_lstm;
tg_time_lstm *tg_time_lstm_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
void       tg_time_lstm_free(tg_time_lstm *layer);
tg_tensor *tg_time_lstm_forward(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs);   /* (N,T,D) -> (N,T,H) */
tg_status  tg_time_lstm_set_state(tg_time_lstm *layer, const tg_tensor *h, const tg_tensor *c);
void       tg_time_lstm_reset_state(tg_time_lstm *layer);
tg_tensor *tg_time_lstm_dh(tg_time_lstm *layer);
tg_tensor *tg_time_lstm_dc(tg_time_lstm *layer);

tg_tensor *tg_gru_cell(tg_tape *tape, tg_tensor *x, tg_tensor *h_prev,
                       tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b);
typedef struct tg_time_gru tg_time_gru;
tg_time_gru *tg_time_gru_new(tg_tensor *Wx, tg_tensor *Wh, tg_tensor *b, int stateful);
void       tg_time_gru_free(tg_time_gru *layer);
tg_tensor *tg_time_gru_forward(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs);
tg_status  tg_time_gru_set_state(tg_time_gru *layer, const tg_tensor *h);
void       tg_time_gru_reset_state(tg_time_gru *layer);
tg_tensor *tg_time_gru_dh(tg_time_gru *layer);

/* issue: encoder-decoder and attention */
tg_tensor *tg_time_rnn_forward_from(tg_tape *tape, tg_time_rnn *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT);
tg_tensor *tg_time_lstm_forward_from(tg_tape *tape, tg_time_lstm *layer, tg_tensor *xs, tg_tensor *h0,
                                     tg_tensor *c0, tg_tensor **hT, tg_tensor **cT);
tg_tensor *tg_time_gru_forward_from(tg_tape *tape, tg_time_gru *layer, tg_tensor *xs, tg_tensor *h0,
                                    tg_tensor **hT);
tg_tensor *tg_attention(tg_tape *tape, tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor **weights);
tg_status tg_attention_ref(tg_tensor *hs_enc, tg_tensor *hs_dec, tg_tensor *dcontext, tg_tensor *context,
                           tg_tensor *weights, tg_tensor *dhs_enc, tg_tensor *dhs_dec);
tg_tensor *tg_argmax(tg_tape *tape, tg_tensor *x, int axis, int keepdims);
tg_tensor *tg_sample(tg_tape *tape, tg_tensor *probs, tg_rng *rng);

/* Types that cannot be redeclared are checked member by member and value by value. */
_Static_assert(TG_F32 == 0 && TG_F64 == 1 && TG_I64 == 2, "tg_dtype");
_Static_assert(sizeof(tg_rng) == 4 * sizeof(uint64_t), "tg_rng is its state");
static const tg_rng rng_state = {.s = {1, 2, 3, 4}};
_Static_assert(TG_OK == 0 && TG_EINVAL == 1 && TG_ESHAPE == 2 && TG_EDTYPE == 3 && TG_ENOMEM == 4 &&
               TG_ESTATE == 5 && TG_EMODIFIED == 6 && TG_EIO == 7 && TG_EFORMAT == 8 && TG_ENONFINITE == 9,
               "tg_status");
static const tg_gradcheck_opts opts = {.eps = 1, .atol = 1, .rtol = 1, .fast = 1, .allow_f32 = 1, .seed = 1};
static const tg_gradcheck_report report = {.passed = 1, .input = 1, .index = (int64_t)1, .analytic = 1.0,
                                           .numeric = 1.0, .max_abs_err = 1.0, .max_rel_err = 1.0,
                                           .message = "m"};
_Static_assert(sizeof report.message == 512, "report.message");
/* typedef enum { TG_OPTIM_SGD, TG_OPTIM_ADAM, TG_OPTIM_ADAMW } tg_optim_kind; and tg_optim_opts: */
_Static_assert(TG_OPTIM_SGD == 0 && TG_OPTIM_ADAM == 1 && TG_OPTIM_ADAMW == 2, "tg_optim_kind");
static const tg_optim_opts optim_opts = {.kind = TG_OPTIM_ADAMW, .lr = 1.0, .momentum = 1.0, .beta1 = 1.0,
                                         .beta2 = 1.0, .eps = 1.0, .weight_decay = 1.0, .nesterov = 1};
#define IS_TYPE(x, type) _Generic((x), type: 1, default: 0)
_Static_assert(IS_TYPE(optim_opts.kind, tg_optim_kind) && IS_TYPE(optim_opts.lr, double) &&
               IS_TYPE(optim_opts.momentum, double) && IS_TYPE(optim_opts.beta1, double) &&
               IS_TYPE(optim_opts.beta2, double) && IS_TYPE(optim_opts.eps, double) &&
               IS_TYPE(optim_opts.weight_decay, double) && IS_TYPE(optim_opts.nesterov, int), "tg_optim_opts");
static tg_status s_shape(tg_tensor *const *i, int n, void *u, int *nd, int64_t *s) { (void)i, (void)n, (void)u, (void)nd, (void)s; return TG_OK; }
static tg_status s_fwd(tg_tensor *const *i, int n, tg_tensor *o, void *u) { (void)i, (void)n, (void)o, (void)u; return TG_OK; }
static tg_status s_bwd(tg_tensor *const *i, int n, tg_tensor *o, tg_tensor *g, void *const *gr, void *u) {
    (void)i, (void)n, (void)o, (void)g, (void)gr, (void)u;
    return TG_OK;
}
static const tg_op_def def = {.name = "x", .shape = s_shape, .forward = s_fwd, .backward = s_bwd};

int api_contract_used(void) {
    return opts.fast + report.passed + (def.name != 0) + (int)(rng_state.s[0] - 1) + (optim_opts.nesterov - 1);
}
