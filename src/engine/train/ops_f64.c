/* engine/train: the operations and the whole model in double precision, the
 * reference the gradient checks compare finite differences against. */
#include "engine/train/train.h"

#define R double
#define OP(name) sl_train_op_##name##_d
#define OPLINK
#define GEMM sl_blas_dgemm
#include "ops_impl.inc"

int sl_train_ref_loss(const sl_train_hparams *hp, const double *params, const int32_t *tokens,
                      int nb, double *loss, double *grads)
{
    return sl_train_ref_loss_masked(hp, params, tokens, NULL, nb, loss, grads);
}

int sl_train_ref_loss_masked(const sl_train_hparams *hp, const double *params,
                             const int32_t *tokens, const uint8_t *mask, int nb, double *loss,
                             double *grads)
{
    if (sl_train_hparams_check(hp, NULL, 0))
        return SL_EINVAL;
    size_t np = sl_train_n_params(hp);
    double *p = sl_malloc(np * sizeof(double)), *g = sl_malloc(np * sizeof(double));
    OP(core) c;
    int rc = SL_ENOMEM;
    if (!p || !g || (rc = OP(core_init)(&c, hp, nb, p, g)))
        goto out;
    memcpy(p, params, np * sizeof(double));
    rc = OP(core_run)(&c, tokens, mask, nb, grads != NULL, loss, NULL);
    if (!rc && grads)
        memcpy(grads, g, np * sizeof(double));
    OP(core_free)(&c);
out:
    sl_free(p);
    sl_free(g);
    return rc;
}

double sl_train_op_xent_d(double *dlogits, const double *logits, const int32_t *targets, int n,
                          int v)
{
    double *rows = sl_calloc((size_t)n, sizeof(double));
    if (!rows)
        return NAN;
    double loss = OP(xent_pool)(dlogits, logits, targets, NULL, n, v, rows, NULL);
    sl_free(rows);
    return loss;
}
