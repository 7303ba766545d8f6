/* tapegrad: training: a named list of parameters, gradient clipping, optimizers and checkpoints.
 *
 * A training loop reads:
 *
 *     tg_params *ps = tg_params_new();
 *     tg_params_add(ps, "W", W);                        // borrowed: ps never frees W
 *     tg_params_add(ps, "b", b);
 *     tg_optim_opts o = tg_optim_defaults(TG_OPTIM_ADAMW);
 *     o.lr = 3e-3;
 *     tg_optim *opt = tg_optim_new(ps, &o);
 *     for (step...) {
 *         tg_tensor *loss = model(tape, ...);
 *         tg_backward(tape, loss, NULL);
 *         tg_params_clip_grad_norm(ps, 1.0);
 *         tg_optim_step(opt);
 *         tg_params_zero_grad(ps);
 *         tg_tape_reset(tape);
 *     }
 *     tg_checkpoint_save("run.safetensors", ps, opt);  // resume: tg_checkpoint_load(path, ps, opt)
 *     tg_optim_free(opt);
 *     tg_params_free(ps);                               // then free W and b
 *
 * The rules are torch.optim's and torch.nn.utils.clip_grad_norm_'s, written out below. Every element is
 * computed in double and stored in the parameter's dtype (f32 or f64), state included, so in f64 the
 * results agree with PyTorch's to rounding (tests/train_torch_check.py replays the optimizers in PyTorch
 * when it is installed: within 1e-15); in f32, PyTorch rounds after each of its ops and tapegrad once per
 * element. Neither the list nor an optimizer may be shared between threads, nor the parameters of one in
 * training (tg_optim_step writes them; tapegrad.h's memory model).
 */
#ifndef TG_TRAIN_H
#define TG_TRAIN_H

#include "tg_tensor.h"

/* ---- parameter lists ---- */

/* Parameters under unique names, in the order they were added. Borrowed: the tensors stay the caller's
   and must outlive the list, which never frees them. */
typedef struct tg_params tg_params;

/* An empty list; NULL with TG_ENOMEM. */
tg_params *tg_params_new(void);
/* Frees the list (and its copies of the names) and the parameters it created (tg_params_create), never
   those added with tg_params_add. NULL is ignored. */
void tg_params_free(tg_params *params);
/* Appends param under a copy of name. TG_EINVAL naming the name for: a NULL name or param (unless an
   earlier failure is pending, whose status and message are kept, as a NULL is most often a failed
   tg_param_new's result); an empty name; a name already in the list; "__metadata__", or a name ending
   in ".adam_m", ".adam_v" or ".sgd_momentum" (checkpoints keep optimizer state under those); a tensor
   that is not a tg_param_new leaf (an input, an op output); a tensor the list holds under another name
   (it would be stepped twice). TG_ESTATE while an optimizer uses the list (its state is sized when it
   is made), or for an output of an ended recording. TG_ENOMEM. The list is unchanged on failure.
   A param with no name yet gets this one (tg_tensor_set_name), which the tape's drawings show; naming
   a leaf the first time is safe while other threads read it. */
tg_status tg_params_add(tg_params *params, const char *name, tg_tensor *param);
/* A new zero-filled parameter (tg_param_new's dtype and shape rules) appended under a copy of name and
   owned by the list: tg_params_free frees it, so a model's weights are made in one call each and freed
   with the list. Checkpoints and optimizers see it as any parameter. NULL with tg_param_new's errors or
   tg_params_add's (the message starts "tg_params_create: "); nothing is added on failure. */
tg_tensor *tg_params_create(tg_params *params, const char *name, tg_dtype dtype, int ndim,
                            const int64_t *shape);
/* How many parameters the list holds; 0 for NULL. */
int tg_params_count(const tg_params *params);
/* The i-th parameter (0-based, insertion order), and in *name (when name is not NULL) its name, owned by
   the list. NULL (and *name NULL) with TG_EINVAL for a NULL list or i outside 0..count-1. */
tg_tensor *tg_params_at(const tg_params *params, int i, const char **name);
/* The parameter of that name; NULL with TG_EINVAL when there is none (or for NULL arguments). */
tg_tensor *tg_params_find(const tg_params *params, const char *name);
/* tg_zero_grad on every parameter. Like torch's zero_grad(set_to_none=False): the gradients become
   zero, and a parameter that has had one still counts as having one for tg_optim_step. NULL is ignored. */
void tg_params_zero_grad(tg_params *params);
/* The global L2 norm of all gradients, as if they were one vector: sqrt(sum over every element of every
   parameter's gradient of g^2), accumulated in double. A gradient no backward has written is zero and
   adds nothing, as torch leaves out a grad that is None. Inf or NaN when a gradient holds one (no error
   is set); 0 for an empty list; NaN with TG_EINVAL for NULL. */
double tg_params_grad_norm(const tg_params *params);
/* torch.nn.utils.clip_grad_norm_(parameters, max_norm) with norm_type 2:
       norm = tg_params_grad_norm(params)
       clip_coef = max_norm / (norm + 1e-6)
       when clip_coef < 1, every gradient g <- g * clip_coef
   and returns norm, the norm before clipping. max_norm >= 0, as torch's results mean something only
   then: 0 zeroes every gradient, +Inf clips nothing; a negative or NaN max_norm is TG_EINVAL naming it,
   returns NaN and leaves the gradients alone (torch would flip or poison them). When norm is Inf or NaN
   it is returned, TG_ENONFINITE is set with a message giving it, and the gradients are left alone
   (torch, with its default error_if_nonfinite=False, would scale them by a NaN or 0). NULL: NaN with
   TG_EINVAL. */
double tg_params_clip_grad_norm(tg_params *params, double max_norm);

/* ---- optimizers ---- */

typedef enum { TG_OPTIM_SGD, TG_OPTIM_ADAM, TG_OPTIM_ADAMW } tg_optim_kind;

/* Options; a kind ignores the fields it does not use (SGD: beta1, beta2, eps; Adam and AdamW: momentum,
   nesterov). With p a parameter, g its gradient, t the number of steps this parameter has taken,
   counting this one (its own count: see tg_optim_step), and every operation elementwise:
     SGD (torch.optim.SGD, dampening 0):
         g <- g + weight_decay * p
         when momentum != 0: buf <- g at the parameter's first step, else momentum * buf + g;
                             g <- g + momentum * buf when nesterov, else g <- buf
         p <- p - lr * g
     Adam (torch.optim.Adam, amsgrad off):
         g <- g + weight_decay * p
         m <- beta1 * m + (1 - beta1) * g                  m and v start at zero
         v <- beta2 * v + (1 - beta2) * g^2
         p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
     AdamW (torch.optim.AdamW): p <- p * (1 - lr * weight_decay), then Adam with weight_decay 0.
   Every field, used by the kind or not, must be finite and: lr >= 0, momentum >= 0, 0 <= beta1 < 1,
   0 <= beta2 < 1, eps >= 0, weight_decay >= 0; nesterov needs momentum > 0 (torch: "Nesterov momentum
   requires a momentum"). Zeros pass, so {.kind = TG_OPTIM_SGD, .lr = 0.1} is valid. */
typedef struct {
    tg_optim_kind kind;
    double lr, momentum, beta1, beta2, eps, weight_decay;
    int nesterov;
} tg_optim_opts;

/* torch.optim's defaults for kind: SGD lr 0.01 (PyTorch has no default lr for SGD), momentum 0, no
   nesterov, weight_decay 0; Adam lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0; AdamW as
   Adam with weight_decay 1e-2. Every field is set for every kind (SGD gets Adam's betas and eps, and
   Adam its momentum 0), so a copy may change kind. An unknown kind gets SGD's values and keeps its kind,
   which tg_optim_new then refuses. */
tg_optim_opts tg_optim_defaults(tg_optim_kind kind);

/* An optimizer over the parameters of a list, with its state: SGD keeps a momentum buffer per parameter
   (when momentum != 0), Adam and AdamW keep m and v, each in the parameter's dtype and shape, and every
   kind a step count per parameter. */
typedef struct tg_optim tg_optim;

/* An optimizer for every parameter params holds now, with a copy of *opts. It keeps a pointer to params,
   which must outlive it; while it lives, tg_params_add on params is refused, so the list and the state
   always match (free the optimizer, add, make a new one). Several optimizers may share a list.
   NULL with TG_EINVAL (NULL argument; an option out of range, naming it and its value; an unknown
   kind) or TG_ENOMEM. */
tg_optim *tg_optim_new(tg_params *params, const tg_optim_opts *opts);
/* One update of every parameter whose gradient some tg_backward has written, by the rules above; a
   parameter without one yet is skipped and its step count does not advance, as torch.optim skips a
   parameter whose grad is None (tg_zero_grad does not make a gradient "none": zeroed gradients still
   step, and weight decay and momentum still move the parameter). Reads the gradients as they are, NaN
   or not. Allocates nothing. TG_EINVAL for NULL. */
tg_status tg_optim_step(tg_optim *optim);
/* Sets the learning rate for the next steps (schedules). A negative or non-finite lr is TG_EINVAL naming
   it and changes nothing; NULL is TG_EINVAL. */
void tg_optim_set_lr(tg_optim *optim, double lr);
/* The tg_optim_step calls made (restored by tg_checkpoint_load): where a resumed run stands, for
   an epoch counter or a schedule. 0 for NULL. */
int64_t tg_optim_steps(const tg_optim *optim);
/* Frees the optimizer and its state, never the parameters; the list may take new parameters again.
   NULL is ignored. */
void tg_optim_free(tg_optim *optim);

/* ---- checkpoints ---- */

/* Writes one safetensors file (tg_io.h: atomic, each tensor's xxh3 checksum in __metadata__) holding
   every parameter, under its name, bit for bit; and when optim is not NULL, its state and options:
     tensors      "<name>.sgd_momentum" (SGD with momentum != 0), or "<name>.adam_m" and "<name>.adam_v"
                  (Adam, AdamW), in the parameter's dtype and shape: zeros before its first step
     __metadata__ "optim.kind" "sgd" | "adam" | "adamw"; "optim.lr", "optim.momentum", "optim.beta1",
                  "optim.beta2", "optim.eps", "optim.weight_decay" in decimal, exactly (%.17g or shorter);
                  "optim.nesterov" "0" | "1"; "optim.steps", the tg_optim_step calls made;
                  "optim.step.<name>", each parameter's own step count
   The data is in the list's order, the parameters first. TG_EINVAL (NULL params or path; an optim made
   for another list), TG_EIO, TG_ENOMEM; a failed save leaves the old file as it was. */
tg_status tg_checkpoint_save(const char *path, const tg_params *params, const tg_optim *optim);
/* Reads a file tg_checkpoint_save wrote into the list's parameters (their data only: gradients are left
   alone) and, when optim is not NULL, into its state, step counts and options (as torch's
   load_state_dict restores the learning rate and the rest: the file's lr replaces the optimizer's).
   A parameter whose step count in the file is above 0 counts from then on as having a gradient (see
   tg_optim_step), as it did in the run that saved it: so a resumed run ends bit for bit where an unbroken
   one does, even when a step's loss leaves such a parameter out (torch, whose reloaded grads are None,
   would skip it there). Gradients are neither saved nor loaded.
   Everything is checked before anything is written, so on failure nothing changes. TG_EFORMAT, naming
   the tensor or key, for: a parameter of the list missing from the file; a tensor of the file that is
   neither a parameter of the list nor state optim expects; a dtype or shape other than the parameter's;
   with optim, a file without optimizer state, of another kind ("optim.kind"), or whose options, step
   counts or state tensors are missing, not numbers or out of range; and every damage tg_load_safetensors
   refuses (truncation, a failed checksum, ...). When optim is NULL the file's optimizer state and
   metadata are ignored (a parameters-only load, to evaluate or to start a new optimizer): tensors named
   "<parameter>.adam_m", ".adam_v" or ".sgd_momentum" are skipped (though checksummed, as every tensor of
   the file is). Other metadata keys are ignored.
   TG_EINVAL (NULL params or path; an optim made for another list), TG_EIO, TG_ENOMEM. */
tg_status tg_checkpoint_load(const char *path, tg_params *params, tg_optim *optim);

#endif
