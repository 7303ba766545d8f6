#!/bin/sh
# Data-parallel rnnlm on this machine: the time of a training step with 1 and 2 ranks (mpirun, loopback,
# shared memory), the bytes each step's allreduce moves, and for K machines with a ring allreduce
# (2 (K-1) / K x the gradient bytes a rank sends and receives a step) the bandwidth at which that
# traffic would take as long as the step's compute. Usage: bench/mpi_scaling.sh BUILD_DIR [EPOCHS]
# (a release build with MPI: meson setup B --buildtype=release -Dtests=false -Dmpi=enabled).
set -eu
build=$1 epochs=${2:-40}
rnnlm="$build/examples/rnnlm"
args="--mpi --epochs $epochs --batch 20 --words 1000"
run() { # ranks -> the median tokens/s of the epochs after the first 5
  OPENBLAS_NUM_THREADS=1 mpirun -np "$1" --oversubscribe --allow-run-as-root --mca btl self,vader $rnnlm $args |
    awk '/^epoch/ { n++; if (n > 5) print $(NF-1) }' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
params=$(OPENBLAS_NUM_THREADS=1 $rnnlm --epochs 0 --batch 20 | awk '/parameters \(/ {print $1}')
t1=$(run 1) t2=$(run 2)
tokens=100 # B 20 x T 5 a step
awk -v p="$params" -v t1="$t1" -v t2="$t2" -v tok="$tokens" 'BEGIN {
  bytes = 4 * (p + 6)
  s1 = tok / t1 * 1e3; s2 = tok / t2 * 1e3
  printf "rnnlm, B 20 T 5 (100 tokens a step), %d f32 parameters: %.0f bytes of gradients a step\n", p, bytes
  printf "1 rank:  %8.0f tokens/s, %.3f ms a step\n", t1, s1
  printf "2 ranks: %8.0f tokens/s, %.3f ms a step (each rank computes half the streams, then one allreduce)\n", t2, s2
  printf "ring allreduce over K machines: each sends and receives 2 (K-1)/K x %.0f bytes a step\n", bytes
  for (k = 2; k <= 64; k *= 4) {
    c = s1 / k # a step of 1/K of the work per machine, if compute divided perfectly
    # at 10 Gbit/s: the gradient size whose allreduce alone takes as long as the compute of a step
    pstar = c * 1e-3 * 10e9 / 8 / (2 * (k - 1) / k) / 4
    printf "  K = %2d: compute ~%.3f ms a step; the allreduce takes as long at %.2f Gbit/s; at 10 Gbit/s it\n", k, c,
      2 * (k - 1) / k * bytes * 8 / (c * 1e-3) / 1e9
    printf "          dominates once a model of this step time has more than %.0f f32 parameters\n", pstar
  }
}'
