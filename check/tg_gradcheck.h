/* tapegrad: gradient checks.
 *
 * tg_gradcheck compares the tape's gradients of a function with central finite differences, with
 * torch.autograd.gradcheck's semantics: in f64, eps 1e-6, and an element passes when
 *     |analytic - numeric| <= atol + rtol * |numeric|     (atol 1e-5, rtol 1e-3),
 * with numeric = (f(x + eps) - f(x - eps)) / (2 eps). A NaN or Inf on either side fails.
 * Full mode compares whole Jacobians: one backward per output element, two evaluations of f per
 * input element. Fast mode (PyTorch's fast_mode) compares v^T J u for random u and v, one number per
 * input, for inputs too large for a full Jacobian: two backward passes and two evaluations of f per
 * input. Either way the backward runs twice for each grad_out, on two recordings, and the check
 * fails if the two runs differ at all (a backward that reads stale state is caught that way).
 *
 * Both also prove that every backward adds into its gradients instead of assigning them (a backward
 * that writes grads[i][k] = ... is right only while its input has one consumer): in the check's first
 * backward pass, each node's backward runs a second time on buffers already holding a known pattern,
 * and must add the same amounts. (Every pass runs the same nodes, so once proves it for the check.)
 * A backward that assigns is a failed check like a wrong value: 0, the report's message naming it
 * ("backward of softplus (node 1) overwrites its gradient of input 0 instead of adding to it: ..."),
 * and the thread's error left alone.
 * The later passes hand over fresh gradient buffers as training does, which built-in ops assign
 * instead of adding to: both ways of writing a gradient are compared with the finite differences.
 * When either check fails, tg_gradcheck_nodes on one recording of f names the node that is wrong.
 *
 * The check never skips silently: no input that needs a gradient, nothing to compare (the output or
 * every such input empty), f32 inputs without allow_f32, or f failing, each make it fail with a
 * message.
 *
 * A failed comparison is a result, not an error: the check returns 0, says where in the report and
 * leaves the thread's error alone. A check that cannot run returns 0 and sets the thread's error
 * (the report's message says the same): TG_EINVAL for a NULL f, inputs or ref, n_inputs < 1, a NULL
 * input (an earlier failure's error is kept), eps <= 0 or tolerances < 0 or not finite, no input that
 * needs a gradient, an input that needs one but is an op output, or f returning NULL without an
 * error; TG_ESTATE for an input that is an output of an ended recording; TG_EDTYPE for f32 inputs
 * without allow_f32; TG_ESHAPE when f's output changes dtype or shape between calls; TG_ENOMEM. When f or tg_backward fail, their status and message are kept
 * (the report adds which call failed), except for the proof above, whose failure is a result; a
 * reference that fails sets the status it returned.
 */
#ifndef TG_GRADCHECK_H
#define TG_GRADCHECK_H

#include <stdio.h>
#include "tg_tape.h"

/* The function under check. It records on `tape` and returns its output (any shape), or NULL after
   setting an error. It is called many times, on a tape reset between calls, and must compute the
   same function each time (no hidden state). The inputs are the caller's leaves, perturbed in place
   for the finite differences (so f may also reach them through ctx). Those finite-difference calls
   run with the tape's gradients off (tg_tape_set_grad_enabled): they record no node. */
typedef tg_tensor *(*tg_fn)(tg_tape *tape, tg_tensor *const *inputs, void *ctx);

typedef struct {
    double eps;     /* finite-difference step */
    double atol;    /* absolute tolerance */
    double rtol;    /* relative tolerance */
    int fast;       /* 1: random projections v^T J u instead of full Jacobians */
    int allow_f32;  /* 1: accept f32 inputs (use tg_gradcheck_defaults_f32 for sizes that fit f32) */
    uint64_t seed;  /* for the random u and v of fast mode */
} tg_gradcheck_opts;

typedef struct {
    int passed;          /* 1 pass, 0 fail */
    int input;           /* the input where the worst mismatch is; -1 when no value was compared */
    int64_t index;       /* its flat element index; -1 for fast mode's projections (v^T J u has no
                            element; fast mode's reentrancy and reference comparisons are per element) */
    double analytic;     /* the two values there (a failed reentrancy check: the two backward runs') */
    double numeric;      /* (for tg_gradcheck_ref's vs_ref report: the reference's value) */
    double max_abs_err;  /* over every compared value; NaN if any difference is NaN */
    double max_rel_err;  /* |a - n| / max(|n|, 1e-12), over every compared value (the floor keeps an
                            exactly zero derivative from turning roundoff into infinity) */
    char message[512];   /* one line, why it failed, or a summary when it passed */
    int64_t node;        /* tg_gradcheck_nodes: the failing node's index on the tape; -1 when it passed,
                            and always for tg_gradcheck and tg_gradcheck_ref */
    char op[64];         /* that node's op name ("" when node is -1) */
} tg_gradcheck_report;
/* The worst entry is the one with the largest |a - n| - (atol + rtol |n|): on failure, the one most
   out of tolerance; on a pass, the one nearest to it in absolute terms. */

/* eps 1e-6, atol 1e-5, rtol 1e-3, full mode, f64 only, seed 0. */
tg_gradcheck_opts tg_gradcheck_defaults(void);
/* For f32 inputs: eps 1e-3, atol 1e-3, rtol 1e-2, allow_f32 = 1. */
tg_gradcheck_opts tg_gradcheck_defaults_f32(void);

/* Checks f's gradient with respect to every input that needs one (made with tg_param_new), at the
   inputs' current values, which it restores. Inputs' gradients are left as they were. opts NULL
   means tg_gradcheck_defaults(); report may be NULL. Returns 1 on pass, 0 on fail (including bad
   arguments, which also set the thread's error). Uses its own tape. */
int tg_gradcheck(tg_fn f, void *ctx, tg_tensor *const *inputs, int n_inputs,
                 const tg_gradcheck_opts *opts, tg_gradcheck_report *report);

/* A hand-derived backward: the gradients of sum(grad_out * f(inputs)) with respect to each input,
   written into grads[i] (caller-allocated, input i's shape and dtype; overwrite, do not add).
   grads[i] is NULL for inputs that need no gradient. The check fills grads with NaN before each call,
   so an element the reference forgets to write fails. A status other than TG_OK stops the check. */
typedef tg_status (*tg_ref_fn)(tg_tensor *const *inputs, const tg_tensor *grad_out,
                               tg_tensor *const *grads, void *ctx);

/* tg_gradcheck, plus a comparison of the tape's gradients with ref's, for the same grad_out vectors
   (one-hot in full mode, random in fast mode), with the same tolerances. vs_ref reports tape against
   ref (its `numeric` field holds the reference's value), vs_numeric tape against finite
   differences; either may be NULL. Returns 1 when both pass. */
int tg_gradcheck_ref(tg_fn f, tg_ref_fn ref, void *ctx, tg_tensor *const *inputs, int n_inputs,
                     const tg_gradcheck_opts *opts, tg_gradcheck_report *vs_ref,
                     tg_gradcheck_report *vs_numeric);

/* Checks each node of the current recording of tape (up to and including out's node) on its own.
   opts as tg_gradcheck's (NULL: defaults); report may be NULL. 1 pass, 0 fail.
   Each node's forward is rerun from its op's table entry at its recorded inputs, perturbed one
   element at a time (central differences, opts' eps and tolerances), and compared with its backward
   for a random grad_out v: every element of v^T J for inputs of up to 4096 elements in all, else one
   random projection v^T J u per input; nodes with at most 16 outputs and 256 input elements also have
   their full Jacobian compared. Built-in ops rerun in f64 from the recorded values (f32 recordings
   need opts->allow_f32); custom ops rerun in their own dtype. Each backward also runs a second time on
   gradient buffers already holding a known pattern, and a backward that assigns instead of adding
   fails the check ("backward of softplus (node 7) overwrites its gradient of input 0 instead of adding
   to it"; a result, as for tg_gradcheck: the thread's error is left alone).
   The first failing node is reported: report->node and ->op, the input and element, both values, and
   a message "%7 softplus: input 0 element 3: analytic ... vs numeric ..."; a pass says how many nodes
   and values were compared and which came nearest to its tolerance, the report's input, index,
   analytic and numeric holding that entry and its message naming the node ("passed: 5 nodes checked,
   96 values compared, ...; nearest to tolerance: %2 tanh input 0 element 3 (...): analytic ... vs
   numeric ..., |diff| ... <= tol ..."). Nothing is skipped: a node whose forward fails on the rerun, or whose
   output is not finite, fails with a message. The recording is left as it was: its backward may run
   afterwards, with the same result. Errors (the check cannot run: returns 0 and sets the thread's
   error) as tg_gradcheck's: TG_EINVAL for a NULL tape or out, an out that is not an op output of the
   tape's current recording (TG_ESTATE for one of an ended recording), bad opts; TG_EDTYPE for f32
   without allow_f32; TG_ENOMEM. */
int tg_gradcheck_nodes(tg_tape *tape, tg_tensor *out, const tg_gradcheck_opts *opts,
                       tg_gradcheck_report *report);
/* The failing node of the last tg_gradcheck_nodes on this thread: its tape index and op name,
   or -1 and "" when it passed. */
int64_t     tg_gradcheck_nodes_failed_index(void);
const char *tg_gradcheck_nodes_failed_op(void);

/* Prints a report in a few readable lines: PASS or FAIL, the worst input and element with both
   values (on a pass: "nearest to tolerance"), the maximum errors and the message (for
   tg_gradcheck_nodes, the failing node, or on a pass the counts and the nearest entry's node). NULL
   report or out prints nothing. */
void tg_gradcheck_print(const tg_gradcheck_report *report, FILE *out);

#endif
