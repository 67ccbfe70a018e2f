"""Dot products of a few centers with rows stored feature by feature, in vector registers.

A k-means++ step multiplies every row by a handful of candidates (5 at k=32). As a GEMM
that product is thin, and OpenBLAS spends most of its time packing the rows: 100,000 x 32
float32 rows by 5 candidates, 2,048 rows a call, took 0.96-1.0 ms on one EPYC (znver5)
thread, 34 GFLOP/s. With the rows stored feature-major (``X_t``, ``(n_features,
n_samples)``), one candidate's dot products with a block of consecutive rows are
multiply-adds of whole vectors: ``acc += X_t[f, block] * c[f]`` over the features, with
the block held in :data:`ACCUMULATORS` vector registers, so that as many independent
fused multiply-adds are in flight. The same rows and candidates: 0.31-0.39 ms (d=2 0.04
against 0.23, d=8 0.09 / 0.32, d=16 0.28 / 0.52; at 64 features the GEMM is as fast, at
128 faster).

Numba's own loops cannot say this: LLVM's loop vectoriser takes the innermost loop, the
one over the features, and gathers across rows; :func:`panel_dots` writes the loop in
LLVM IR with vector types, which LLVM lowers to whatever the CPU has (AVX-512: 16 float32
lanes a register; AVX2 and NEON split a 64-byte vector in two or four).

Each lane sums its row's products in feature order, one fused multiply-add at a time: the
order of a loop ``dots[i] += X_t[f, i] * c[f]`` compiled with ``contract``, and so its
bits (where the CPU has fused multiply-adds, which ``contract`` uses; the rows after the
last whole block take :func:`fused_multiply_add` on any CPU).
"""

import llvmlite.binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._cpu_runtime import CACHE

# Registers of accumulators per block: a fused multiply-add's latency (4 cycles here)
# times the two issued a cycle. 4 accumulators took 0.54-0.62 ms where 8 took 0.31-0.39
# (the step above).
ACCUMULATORS = 8

# One vector of each accumulator: a 512-bit register where the CPU has them, else 256
# bits (8 AVX-512 vectors of 16 float32 rows need 8 of 32 registers; on AVX2's 16, a
# 512-bit vector would take two and leave none for the rows being loaded).
VECTOR_BYTES = 64 if llvm.get_host_cpu_features().get("avx512f") else 32


def block_rows(itemsize):
    """Rows a :func:`panel_dots` call covers: ACCUMULATORS vectors of ``itemsize`` lanes."""
    return ACCUMULATORS * (VECTOR_BYTES // itemsize)


_block_rows = njit(nogil=True, cache=CACHE)(block_rows)


def _declare_fma(module, value_type):
    """LLVM's ``fma`` (one rounding) on ``value_type``, a float or a vector of floats."""
    suffix = (f"v{value_type.count}{value_type.element.intrinsic_name}"
              if isinstance(value_type, ir.VectorType) else value_type.intrinsic_name)
    return cgutils.get_or_insert_function(
        module, ir.FunctionType(value_type, [value_type] * 3), f"llvm.fma.{suffix}")


@intrinsic
def panel_dots(typingctx, X_t, start, candidates, dots):
    """``dots[j, :B] = candidates[j] @ X_t[:, start:start + B]`` for every candidate ``j``,
    ``B = block_rows(itemsize)``; each sum in feature order by fused multiply-adds.

    ``X_t`` (n_features, >= start + B) and ``candidates`` (n_candidates, n_features) and
    ``dots`` (n_candidates, >= B) share a float dtype and have unit stride along their
    rows; no bounds are checked."""
    arrays = (X_t, candidates, dots)
    if not all(isinstance(array, types.Array) and array.ndim == 2 and array.layout != "F"
               for array in arrays):
        return None
    if not X_t.dtype == candidates.dtype == dots.dtype or X_t.dtype not in (
            types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        scalar = context.get_data_type(dtype)
        itemsize = context.get_abi_sizeof(scalar)
        lanes = VECTOR_BYTES // itemsize
        vector = ir.VectorType(scalar, lanes)
        fma = _declare_fma(builder.module, vector)
        rows, centers, out = (make_array(ty)(context, builder, value) for ty, value in zip(
            (signature.args[0], signature.args[2], signature.args[3]), (args[0], args[2], args[3])))
        start_value = context.cast(builder, args[1], signature.args[1], types.intp)
        n_features = cgutils.unpack_tuple(builder, rows.shape)[0]
        n_candidates = cgutils.unpack_tuple(builder, centers.shape)[0]
        itemsize_value = context.get_constant(types.intp, itemsize)
        rows_stride, centers_stride, out_stride = (
            builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0], itemsize_value)
            for array in (rows, centers, out))
        block = builder.gep(rows.data, [start_value])
        # Stack slots, promoted to registers by LLVM (each is only ever loaded and stored
        # whole).
        accumulators = [cgutils.alloca_once(builder, vector) for _ in range(ACCUMULATORS)]
        undefined = ir.Constant(vector, ir.Undefined)
        lane_zero = ir.Constant(ir.IntType(32), 0)
        broadcast = ir.Constant(ir.VectorType(ir.IntType(32), lanes), None)

        def vector_at(pointer, index):
            return builder.bitcast(
                builder.gep(pointer, [ir.Constant(cgutils.intp_t, index * lanes)]),
                vector.as_pointer())

        with cgutils.for_range(builder, n_candidates) as candidate_loop:
            center = builder.gep(centers.data, [builder.mul(candidate_loop.index,
                                                            centers_stride)])
            for accumulator in accumulators:
                builder.store(ir.Constant(vector, None), accumulator)
            with cgutils.for_range(builder, n_features) as feature_loop:
                feature = feature_loop.index
                value = builder.load(builder.gep(center, [feature]))
                values = builder.shuffle_vector(
                    builder.insert_element(undefined, value, lane_zero), undefined, broadcast)
                row = builder.gep(block, [builder.mul(feature, rows_stride)])
                for index, accumulator in enumerate(accumulators):
                    x = builder.load(vector_at(row, index), align=itemsize)
                    builder.store(builder.call(fma, [x, values, builder.load(accumulator)]),
                                  accumulator)
            out_row = builder.gep(out.data, [builder.mul(candidate_loop.index, out_stride)])
            for index, accumulator in enumerate(accumulators):
                builder.store(builder.load(accumulator), vector_at(out_row, index),
                              align=itemsize)
        return context.get_dummy_value()

    return types.void(X_t, start, candidates, dots), codegen


@intrinsic
def fused_multiply_add(typingctx, x, y, z):
    """``x * y + z`` rounded once (LLVM's ``fma``, as :func:`panel_dots` uses), whether
    or not the CPU fuses it in one instruction."""
    if not (isinstance(x, types.Float) and x == y == z):
        return None

    def codegen(context, builder, signature, args):
        fma = _declare_fma(builder.module, context.get_data_type(signature.args[0]))
        return builder.call(fma, args)

    return x(x, y, z), codegen


@njit(nogil=True, cache=CACHE)
def panel_chunk_dots(
    X_t,  # IN (n_features, >= end) feature-major rows
    start,
    end,
    candidates,  # IN (n_candidates, n_features)
    dots,  # OUT (n_candidates, >= end - start)
):
    """``dots[j, i] = candidates[j] @ X_t[:, start + i]`` for the rows ``start:end``: whole
    blocks by :func:`panel_dots`, the rest one fused multiply-add at a time in the same
    order, so that a row's bits do not depend on where its block starts."""
    n_features = X_t.shape[0]
    block = _block_rows(X_t.itemsize)
    n_rows = end - start
    n_whole = n_rows - n_rows % block
    for offset in range(0, n_whole, block):
        panel_dots(X_t, start + offset, candidates, dots[:, offset:])
    for j in range(candidates.shape[0]):
        tail = dots[j, n_whole:n_rows]
        for i in range(n_rows - n_whole):
            tail[i] = 0
        for f in range(n_features):
            c = candidates[j, f]
            x_f = X_t[f, start + n_whole:end]
            for i in range(n_rows - n_whole):
                tail[i] = fused_multiply_add(x_f[i], c, tail[i])


# Rows transposed per pass of transpose_rows: its writes go to TRANSPOSE_ROWS-long runs of
# each feature's row. 100,000 x 32 float32 rows, one thread, ms: 256-row blocks 0.80,
# 2,048-row blocks 2.0, row by row 0.95-1.7; 8 features 0.14, 0.18, 0.22.
TRANSPOSE_ROWS = 256


@njit(nogil=True, cache=CACHE)
def transpose_rows(
    X,  # IN (n_samples, n_features)
    start,
    end,
    X_t,  # OUT (n_features, >= end - start)
):
    """``X_t[:, :end - start] = X[start:end].T``, TRANSPOSE_ROWS rows at a time."""
    for block_start in range(start, end, TRANSPOSE_ROWS):
        rows = X[block_start:min(block_start + TRANSPOSE_ROWS, end)]
        offset = block_start - start
        for f in range(X.shape[1]):
            x_f = X_t[f, offset:offset + rows.shape[0]]
            for i in range(rows.shape[0]):
                x_f[i] = rows[i, f]


@njit(nogil=True, cache=CACHE)
def transposed_chunk_dots(
    X,  # IN (n_samples, n_features)
    start,
    end,
    candidates,  # IN (n_candidates, n_features)
    rows_scratch,  # SCRATCH (>= n_features * (end - start),) X.dtype
    dots,  # OUT (n_candidates, >= end - start)
):
    """:func:`panel_chunk_dots` of the rows ``start:end`` of row-major X, transposed into
    ``rows_scratch`` first: the bits of the same rows in X transposed once."""
    n_rows = end - start
    rows_t = rows_scratch[: X.shape[1] * n_rows].reshape((X.shape[1], n_rows))
    transpose_rows(X, start, end, rows_t)
    panel_chunk_dots(rows_t, 0, n_rows, candidates, dots)
