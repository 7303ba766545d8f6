/* An outside program: the worked example of tapegrad.h, built against the installed library with
   pkg-config by tests/install_check.sh. */
#include <stdio.h>
#include <tapegrad.h>

int api_contract_used(void);

int main(void) {
    int64_t xs[2] = {4, 3}, ws[2] = {3, 2}, bs[1] = {2};
    tg_tensor *x = tg_tensor_new(TG_F64, 2, xs);
    tg_tensor *W = tg_param_new(TG_F64, 2, ws);
    tg_tensor *b = tg_param_new(TG_F64, 1, bs);
    uint64_t seed = 7;
    tg_tensor_fill_uniform(x, -1, 1, &seed);
    tg_tensor_fill_uniform(W, -1, 1, &seed);
    tg_tape *tape = tg_tape_new();
    tg_tensor *L = tg_sum(tape, tg_tanh(tape, tg_add(tape, tg_matmul(tape, x, W), b)));
    if (!L || tg_backward(tape, L, NULL) != TG_OK) {
        fprintf(stderr, "%s\n", tg_last_error());
        return 1;
    }
    double *dW = tg_tensor_grad(W);
    printf("L = %.6f, dL/dW[0] = %.6f\n", tg_tensor_get(L, 0), dW[0]);
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
    return api_contract_used() == 3 ? 0 : 1;
}
