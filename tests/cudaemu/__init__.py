"""The project's CUDA-on-CPU harness: ``kernels/*.cu`` run unchanged on a CPU (README.md)."""
