/* An outside program: the worked example of tapegrad.h, built against the installed library by
   tests/install_check.sh with the README's line, `cc app.c $(pkg-config --cflags --libs tapegrad)`. It
   calls libm itself (sqrt of a value known only at run time, which the compiler cannot fold), as most
   programs using tapegrad do: the line must link that too. */
#include <math.h>
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
    double *dW = tg_tensor_grad(W), norm2 = 0;
    for (int i = 0; i < 6; i++) norm2 += dW[i] * dW[i];
    printf("L = %.6f, dL/dW[0] = %.6f, |dL/dW| = %.6f\n", tg_tensor_get(L, 0), dW[0], sqrt(norm2));
    tg_tape_free(tape);
    tg_tensor_free(x), tg_tensor_free(W), tg_tensor_free(b);
    return api_contract_used() == 3 ? 0 : 1;
}
