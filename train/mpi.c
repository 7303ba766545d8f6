/* Data-parallel training over MPI: one broadcast of the parameters, one allreduce of the gradients. */
#include <string.h>
#include "train_internal.h"
#include "tg_mpi.h"

static tg_status mpi_failed(const char *fn, const char *call, int rc) {
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error code %d", rc);
    return tg__fail(TG_EIO, "%s: %s failed: %s", fn, call, s);
}

/* The packed layout: every parameter's elements, in list order, as float when all are f32 (*single),
   else as double; plus `extra` slots at the end. NULL with TG_ENOMEM. */
static void *pack_buffer(const char *fn, tg_params *params, int extra, int *single, int64_t *count) {
    int64_t n = 0;
    *single = 1;
    for (int i = 0; i < tg_params_count(params); i++) {
        tg_tensor *p = tg_params_at(params, i, NULL);
        n += p->numel;
        *single &= p->dtype == TG_F32;
    }
    *count = n + extra;
    void *buf = tg__params_scratch(params, (size_t)*count * (*single ? sizeof(float) : sizeof(double)) + 1);
    if (!buf) tg__fail(TG_ENOMEM, "%s: out of memory for %lld packed values", fn, (long long)*count);
    return buf;
}

static double get(const tg_tensor *p, const void *v, int64_t k) {
    return p->dtype == TG_F32 ? ((const float *)v)[k] : ((const double *)v)[k];
}

/* Copies each parameter's data (or gradient) into buf, or back out of it (unpack) times s. */
static void move(tg_params *params, void *buf, int single, int grads, int unpack, double s) {
    int64_t at = 0;
    for (int i = 0; i < tg_params_count(params); i++) {
        tg_tensor *p = tg_params_at(params, i, NULL);
        void *v = grads ? p->grad : p->data;
        for (int64_t k = 0; k < p->numel; k++, at++) {
            if (unpack) {
                double x = (single ? ((float *)buf)[at] : ((double *)buf)[at]) * s;
                if (p->dtype == TG_F32) ((float *)v)[k] = (float)x;
                else ((double *)v)[k] = x;
            } else if (single) {
                ((float *)buf)[at] = ((float *)v)[k];
            } else {
                ((double *)buf)[at] = get(p, v, k);
            }
        }
    }
}

tg_status tg_mpi_broadcast_params(tg_params *params, int root, MPI_Comm comm) {
    static const char fn[] = "tg_mpi_broadcast_params";
    if (!params) return tg__null(fn, "params");
    int single;
    int64_t n;
    void *buf = pack_buffer(fn, params, 0, &single, &n);
    if (!buf) return TG_ENOMEM;
    if (n > INT32_MAX) return tg__fail(TG_EINVAL, "%s: %lld values are more than one MPI call carries", fn, (long long)n);
    int rank, rc = MPI_Comm_rank(comm, &rank);
    if (rc != MPI_SUCCESS) return mpi_failed(fn, "MPI_Comm_rank", rc);
    if (rank == root) move(params, buf, single, 0, 0, 1);
    rc = MPI_Bcast(buf, (int)n, single ? MPI_FLOAT : MPI_DOUBLE, root, comm);
    if (rc != MPI_SUCCESS) return mpi_failed(fn, "MPI_Bcast", rc);
    if (rank != root) move(params, buf, single, 0, 1, 1);
    return TG_OK;
}

tg_status tg_mpi_allreduce_grads(tg_params *params, MPI_Comm comm) {
    static const char fn[] = "tg_mpi_allreduce_grads";
    if (!params) return tg__null(fn, "params");
    int np = tg_params_count(params), single;
    int64_t n;
    /* one extra slot per parameter: 1 where this rank's backward wrote its gradient */
    void *buf = pack_buffer(fn, params, np, &single, &n);
    if (!buf) return TG_ENOMEM;
    if (n > INT32_MAX) return tg__fail(TG_EINVAL, "%s: %lld values are more than one MPI call carries", fn, (long long)n);
    int size, rc = MPI_Comm_size(comm, &size);
    if (rc != MPI_SUCCESS) return mpi_failed(fn, "MPI_Comm_size", rc);
    move(params, buf, single, 1, 0, 1);
    for (int i = 0; i < np; i++) {
        double written = (tg_params_at(params, i, NULL)->flags & TG__GRADDED) != 0;
        if (single) ((float *)buf)[n - np + i] = (float)written;
        else ((double *)buf)[n - np + i] = written;
    }
    rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, single ? MPI_FLOAT : MPI_DOUBLE, MPI_SUM, comm);
    if (rc != MPI_SUCCESS) return mpi_failed(fn, "MPI_Allreduce", rc);
    move(params, buf, single, 1, 1, 1.0 / size);
    for (int i = 0; i < np; i++)
        if ((single ? ((float *)buf)[n - np + i] : ((double *)buf)[n - np + i]) > 0)
            tg_params_at(params, i, NULL)->flags |= TG__GRADDED;
    return TG_OK;
}
