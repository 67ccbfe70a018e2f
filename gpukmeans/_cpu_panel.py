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
import numpy as np
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
# 2,048-row blocks 2.0, row by row 0.95-1.7; 8 features 0.14, 0.18, 0.22 (element by
# element, before transpose_tile). With the squares, each chunk of 2,048 rows into its
# scratch, the whole of 100,000 rows, old / new, ms, alternated: float32 16 features
# 0.53 / 0.48, 24: 0.81-0.94 / 0.69-0.73, 32: 1.25-1.50 / 0.97-1.34; float64 8 the same
# (0.31), 16 0.74-0.81 / 0.93-0.94 (float64 transposes chunks of at most 8 features),
# 32 2.5-4.1 / 2.2-2.3; under 16 float32 features nothing is tiled (0.08-0.27, as before).
TRANSPOSE_ROWS = 256


def tile_lanes(itemsize):
    """Rows and features of a :func:`transpose_tile`: a vector's lanes."""
    return VECTOR_BYTES // itemsize


_tile_lanes = njit(nogil=True, cache=CACHE)(tile_lanes)


@intrinsic
def transpose_tile(typingctx, X, row, feature, X_t, column):
    """``X_t[feature + k, column + i] = X[row + i, feature + k]`` for ``i, k <
    tile_lanes(itemsize)``: a square of one vector per row, loaded whole, transposed in
    registers by log2(lanes) rounds of shuffles (each round swaps the off-diagonal
    halves of every block of the round's size), stored whole.

    Element by element, the loop in :func:`transpose_rows` ran at about 1.3 values a
    cycle; its loads of one feature from each row all miss the vector unit. ``X`` and
    ``X_t`` share a float dtype and have unit stride along their rows; no bounds are
    checked."""
    if not (all(isinstance(array, types.Array) and array.ndim == 2 and array.layout != "F"
                for array in (X, X_t))
            and X.dtype == X_t.dtype and X.dtype in (types.float32, types.float64)):
        return None

    def codegen(context, builder, signature, args):
        dtype = signature.args[0].dtype
        scalar = context.get_data_type(dtype)
        itemsize = context.get_abi_sizeof(scalar)
        lanes = tile_lanes(itemsize)
        vector = ir.VectorType(scalar, lanes)
        rows, transposed = (make_array(ty)(context, builder, value) for ty, value in zip(
            (signature.args[0], signature.args[3]), (args[0], args[3])))
        row, feature, column = (context.cast(builder, value, ty, types.intp) for value, ty in
                                zip((args[1], args[2], args[4]),
                                    (signature.args[1], signature.args[2], signature.args[4])))
        itemsize_value = context.get_constant(types.intp, itemsize)
        rows_stride, transposed_stride = (
            builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0], itemsize_value)
            for array in (rows, transposed))

        def vector_pointer(array, first, second, stride, index):
            offset = builder.add(builder.mul(builder.add(first, context.get_constant(
                types.intp, index)), stride), second)
            return builder.bitcast(builder.gep(array.data, [offset]), vector.as_pointer())

        tile = [builder.load(vector_pointer(rows, row, feature, rows_stride, i), align=itemsize)
                for i in range(lanes)]
        int32 = ir.IntType(32)
        block = lanes // 2
        while block >= 1:
            groups = range(lanes // (2 * block))
            # Within each block of 2 x block lanes: the first halves of rows i and
            # i + block side by side, and the second halves.
            low = [i for g in groups for i in (
                [g * 2 * block + t for t in range(block)]
                + [lanes + g * 2 * block + t for t in range(block)])]
            high = [i + block for i in low]
            low_mask, high_mask = (ir.Constant(ir.VectorType(int32, lanes), mask)
                                   for mask in (low, high))
            swapped = list(tile)
            for i in range(lanes):
                if i & block:
                    continue
                swapped[i] = builder.shuffle_vector(tile[i], tile[i + block], low_mask)
                swapped[i + block] = builder.shuffle_vector(tile[i], tile[i + block], high_mask)
            tile = swapped
            block //= 2
        for k, values in enumerate(tile):
            builder.store(values, vector_pointer(transposed, feature, column, transposed_stride,
                                                 k), align=itemsize)
        return context.get_dummy_value()

    return types.void(X, row, feature, X_t, column), codegen


@njit(nogil=True, cache=CACHE)
def transpose_rows(
    X,  # IN (n_samples, n_features)
    start,
    end,
    X_t,  # OUT (n_features, >= end - start)
):
    """``X_t[:, :end - start] = X[start:end].T``, TRANSPOSE_ROWS rows at a time: whole
    squares of a vector's lanes by :func:`transpose_tile`, the rest element by element.
    Rows and features copied, not computed: the same values either way."""
    lanes = _tile_lanes(X.itemsize)
    n_features = X.shape[1]
    tiled_features = n_features - n_features % lanes
    for block_start in range(start, end, TRANSPOSE_ROWS):
        block_end = min(block_start + TRANSPOSE_ROWS, end)
        tiled_end = block_start
        while tiled_end + lanes <= block_end and tiled_features > 0:
            for feature in range(0, tiled_features, lanes):
                transpose_tile(X, tiled_end, feature, X_t, tiled_end - start)
            tiled_end += lanes
        # Element by element: every feature of the rows after the squares, then the
        # features after the squares of the rows in them.
        _transpose_elements(X, tiled_end, block_end, 0, n_features, X_t, tiled_end - start)
        _transpose_elements(X, block_start, tiled_end, tiled_features, n_features, X_t,
                            block_start - start)


@njit(nogil=True, cache=CACHE)
def _transpose_elements(X, start, end, first_feature, end_feature, X_t, column):
    """``X_t[f, column:column + end - start] = X[start:end, f]`` for ``first_feature <= f <
    end_feature``."""
    rows = X[start:end]
    for f in range(first_feature, end_feature):
        x_f = X_t[f, column:column + rows.shape[0]]
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


def _make_block_dots(n_rows, n_centers):
    """An intrinsic ``block_dots(X, rows, r, centers, center, dots)``: ``dots[r + i,
    center + c] = X[rows[r + i]] . centers[center + c]`` for ``i < n_rows``, ``c <
    n_centers``, the sums in ``n_rows * n_centers`` vector registers of VECTOR_BYTES.

    Written with vector types because LLVM's loop vectoriser, given a Numba loop of a
    6 x 4 block, took its 24 sums as 256-bit vectors (``ymm``) on a Xeon, where its
    cost model prefers them to 512-bit ones, half of what each AVX-512 multiply-add can
    do, and on AVX2 spilled sums (see :data:`BLOCK_ROWS`). The sums by
    :func:`_emit_sums`, one chain each (a block's 12 or 24 are enough in flight): the
    same operations whichever of the block's rows and centers a pair is, so a pair's
    bits do not depend on its place. X and centers have unit stride along their rows
    (the caller checks: the loads assume it); no bounds are checked."""

    @intrinsic
    def block_dots(typingctx, X, rows, r, centers, center, dots):
        # X and centers are read a vector at a time along their rows; dots, written a
        # value at a time, may be a transposed view (the fold's (n_clusters, n_rows)).
        if not all(isinstance(array, types.Array) and array.ndim == 2
                   and (array.layout != "F" or array is dots) for array in (X, centers, dots)):
            return None
        if not X.dtype == centers.dtype == dots.dtype or X.dtype not in (
                types.float32, types.float64):
            return None
        if not (isinstance(rows, types.Array) and rows.ndim == 1
                and isinstance(rows.dtype, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            dtype = signature.args[0].dtype
            itemsize = context.get_abi_sizeof(context.get_data_type(dtype))
            data, row_ids, means, out = (
                make_array(ty)(context, builder, value)
                for ty, value in zip((signature.args[0], signature.args[1],
                                      signature.args[3], signature.args[5]),
                                     (args[0], args[1], args[3], args[5])))
            intp = cgutils.intp_t
            r_value = context.cast(builder, args[2], signature.args[2], types.intp)
            center_value = context.cast(builder, args[4], signature.args[4], types.intp)
            n_features = cgutils.unpack_tuple(builder, data.shape)[1]
            itemsize_value = context.get_constant(types.intp, itemsize)
            data_stride, means_stride = (
                builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0], itemsize_value)
                for array in (data, means))
            out_row_stride, out_column_stride = (
                builder.sdiv(stride, itemsize_value)
                for stride in cgutils.unpack_tuple(builder, out.strides))
            ids_stride = builder.sdiv(
                cgutils.unpack_tuple(builder, row_ids.strides)[0],
                context.get_constant(types.intp, context.get_abi_sizeof(
                    context.get_data_type(signature.args[1].dtype))))
            row_pointers = []
            for i in range(n_rows):
                position = builder.mul(builder.add(r_value, ir.Constant(intp, i)), ids_stride)
                row_id = context.cast(builder, builder.load(builder.gep(row_ids.data,
                                                                        [position])),
                                      signature.args[1].dtype, types.intp)
                row_pointers.append(builder.gep(data.data, [builder.mul(row_id, data_stride)]))
            center_pointers = [
                builder.gep(means.data, [builder.mul(
                    builder.add(center_value, ir.Constant(intp, c)), means_stride)])
                for c in range(n_centers)]
            totals = _emit_sums(context, builder, dtype, row_pointers, center_pointers,
                                n_features, 1)
            for i in range(n_rows):
                out_row = builder.gep(out.data, [builder.mul(
                    builder.add(r_value, ir.Constant(intp, i)), out_row_stride)])
                for c in range(n_centers):
                    builder.store(builder.load(totals[i][c]), builder.gep(
                        out_row, [builder.mul(builder.add(center_value, ir.Constant(intp, c)),
                                              out_column_stride)]))
            return context.get_dummy_value()

        return types.void(X, rows, r, centers, center, dots), codegen

    return block_dots


# The block's sums, its centers' vectors and a row's vector stay in registers: with
# 512-bit vectors (32 registers) 6 rows x 4 centers (24 + 4 + 1); with 256-bit ones
# (AVX2's 16) 4 rows x 3 centers (12 + 3 + 1). Where the 6 x 4 block took AVX2's
# registers, LLVM spilled sums to the stack at every feature: a Zen 3 EPYC (AVX2), one
# thread, all 70,000 MNIST rows against k centers, 256 rows a call, ms, the 6 x 4
# Numba loop / 6 x 4 here / 3 x 4 (17 registers) / 4 x 3 / OpenBLAS's SGEMM: k=10 31.6
# / 45.8 / 43.6 / 28.1 / 40.5; k=20 64.6 / 75.2 / 68.0 / 37.8 / 53.0; k=100 286 / 335 /
# 299 / 142 / 147; k=256 717 / 838 / 760 / 358 / 329. Every (row, center) pair takes
# the same operations in any block (_emit_sums), so the block's shape changes no bits.
BLOCK_ROWS, BLOCK_CENTERS = (6, 4) if VECTOR_BYTES == 64 else (4, 3)
block_dots = _make_block_dots(BLOCK_ROWS, BLOCK_CENTERS)
block_dots_two = _make_block_dots(BLOCK_ROWS, 2)
# One row against four or eight centers in IR where the CPU has 512-bit vectors (one
# pass of eight: 8 sums and 8 centers' vectors, 16 of AVX2's registers before the row's);
# elsewhere the Numba loops of gpukmeans._cpu_nearest, whose vectors LLVM picks. With
# AVX2 the IR lost inside the k-means++ step (though alone, a loop of its dot products
# won): a Zen 3 EPYC, one thread, whole k-means++ of 100,000 float32 blobs, k=32,
# alternated in one process, ms, Numba loops / IR: 128 features 234 / 280, 256: 348 / 376.
ROW_DOTS_IN_IR = VECTOR_BYTES == 64


def _emit_sums(context, builder, dtype, row_pointers, center_pointers, n_features, chains):
    """The IR of a few rows' dot products with a few centers (pointers to their first
    values, unit stride), in vector registers of VECTOR_BYTES: ``chains`` vectors per
    (row, center) take the features' vectors in turn (vector ``v`` into chain ``v %
    chains``), each center's vector loaded once for all the rows, so that enough fused
    multiply-adds are in flight (their latency times the two issued a cycle: 8); then
    the chains are added in order, the lanes in a fixed tree of halves, then the
    features after the last whole vector, one fused multiply-add at a time. The same
    operations for every (row, center) pair, whatever its place. Returns each pair's
    sum, ``totals[row][center]``, as a stack slot of ``dtype``."""
    scalar = context.get_data_type(dtype)
    itemsize = context.get_abi_sizeof(scalar)
    lanes = VECTOR_BYTES // itemsize
    vector = ir.VectorType(scalar, lanes)
    fma = _declare_fma(builder.module, vector)
    fma_scalar = _declare_fma(builder.module, scalar)
    intp = cgutils.intp_t
    sums = [[[cgutils.alloca_once(builder, vector) for _ in range(chains)]
             for _ in center_pointers] for _ in row_pointers]
    for row_sums in sums:
        for center_sums in row_sums:
            for accumulator in center_sums:
                builder.store(ir.Constant(vector, None), accumulator)

    def vector_at(pointer, feature):
        return builder.load(builder.bitcast(builder.gep(pointer, [feature]),
                                            vector.as_pointer()), align=itemsize)

    def multiply_add(feature, chain):
        center_vectors = [vector_at(pointer, feature) for pointer in center_pointers]
        for i, row_pointer in enumerate(row_pointers):
            x_vector = vector_at(row_pointer, feature)
            for c, center_vector in enumerate(center_vectors):
                accumulator = sums[i][c][chain]
                builder.store(builder.call(fma, [x_vector, center_vector,
                                                 builder.load(accumulator)]), accumulator)

    lanes_value = ir.Constant(intp, lanes)
    step = ir.Constant(intp, lanes * chains)
    n_rounds = builder.sdiv(n_features, step)
    with cgutils.for_range(builder, n_rounds) as loop:
        first = builder.mul(loop.index, step)
        for chain in range(chains):
            multiply_add(builder.add(first, ir.Constant(intp, chain * lanes)), chain)
    # The whole vectors after the last round, into the chains in turn.
    done = builder.mul(n_rounds, step)
    n_vectors = builder.sdiv(n_features, lanes_value)
    left = builder.sub(n_vectors, builder.sdiv(done, lanes_value))
    for chain in range(1, chains):
        with builder.if_then(builder.icmp_signed(">=", left, ir.Constant(intp, chain))):
            multiply_add(builder.add(done, ir.Constant(intp, (chain - 1) * lanes)),
                         chain - 1)
    totals = []
    for row_sums in sums:
        row_totals = []
        for center_sums in row_sums:
            value = builder.load(center_sums[0])
            for accumulator in center_sums[1:]:
                value = builder.fadd(value, builder.load(accumulator))
            width = lanes
            while width > 1:
                width //= 2
                low = builder.shuffle_vector(value, value, ir.Constant(
                    ir.VectorType(ir.IntType(32), width), list(range(width))))
                high = builder.shuffle_vector(value, value, ir.Constant(
                    ir.VectorType(ir.IntType(32), width), list(range(width, 2 * width))))
                value = builder.fadd(low, high)
            total = cgutils.alloca_once(builder, scalar)
            builder.store(builder.extract_element(value, ir.Constant(ir.IntType(32), 0)),
                          total)
            row_totals.append(total)
        totals.append(row_totals)
    first_left = builder.mul(n_vectors, lanes_value)
    with cgutils.for_range_slice(builder, first_left, n_features,
                                 ir.Constant(intp, 1)) as (feature, _):
        center_values = [builder.load(builder.gep(pointer, [feature]))
                         for pointer in center_pointers]
        for i, row_pointer in enumerate(row_pointers):
            x_value = builder.load(builder.gep(row_pointer, [feature]))
            for c, center_value in enumerate(center_values):
                builder.store(builder.call(fma_scalar, [x_value, center_value,
                                                        builder.load(totals[i][c])]),
                              totals[i][c])
    return totals


def _make_row_dots(n_centers, chains):
    """An intrinsic ``row_dots(x, centers, center, dots)``: ``dots[center + c] = x .
    centers[center + c]`` for ``c < n_centers``, one row ``x`` against a few centers (the
    k-means++ candidates beyond 64 features) by :func:`_emit_sums`. ``x`` and
    ``centers``' rows have unit stride (the caller checks: the loads assume it)."""

    @intrinsic
    def row_dots(typingctx, x, centers, center, dots):
        if not (isinstance(x, types.Array) and x.ndim == 1
                and isinstance(dots, types.Array) and dots.ndim == 1
                and isinstance(centers, types.Array) and centers.ndim == 2
                and centers.layout != "F"):
            return None
        if not x.dtype == centers.dtype == dots.dtype or x.dtype not in (
                types.float32, types.float64):
            return None

        def codegen(context, builder, signature, args):
            dtype = signature.args[0].dtype
            itemsize_value = context.get_constant(
                types.intp, context.get_abi_sizeof(context.get_data_type(dtype)))
            row, means, out = (make_array(ty)(context, builder, value) for ty, value in zip(
                (signature.args[0], signature.args[1], signature.args[3]),
                (args[0], args[1], args[3])))
            intp = cgutils.intp_t
            center_value = context.cast(builder, args[2], signature.args[2], types.intp)
            means_stride, out_stride = (
                builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0], itemsize_value)
                for array in (means, out))
            center_pointers = [
                builder.gep(means.data, [builder.mul(
                    builder.add(center_value, ir.Constant(intp, c)), means_stride)])
                for c in range(n_centers)]
            (totals,) = _emit_sums(context, builder, dtype, [row.data], center_pointers,
                                   cgutils.unpack_tuple(builder, row.shape)[0], chains)
            for c in range(n_centers):
                builder.store(builder.load(totals[c]), builder.gep(out.data, [builder.mul(
                    builder.add(center_value, ir.Constant(intp, c)), out_stride)]))
            return context.get_dummy_value()

        return types.void(x, centers, center, dots), codegen

    return row_dots


# Four centers take two chains each, eight one: eight multiply-adds in flight either way.
row_dots_1x4 = _make_row_dots(4, 2)
row_dots_1x8 = _make_row_dots(8, 1)


def _make_panel_nearest(n_vectors, n_centers):
    """An intrinsic ``panel_nearest(rows_t, start, minus_two_centers, centers_squared_norms,
    center, best, best_value, second_value, out_start)``: the values ``centers_squared_norms[j]
    + minus_two_centers[j] @ rows_t[:, start + i]`` of the centers ``center <= j < center +
    n_centers``, for the ``n_vectors`` vectors of rows from ``start``, folded in the
    centers' order into each row's ``best``, ``best_value`` and ``second_value`` (at
    ``out_start + i``), as :func:`gpukmeans._cpu_nearest._fold_value` folds them.

    The sums stay in ``n_vectors x n_centers`` vector registers and are folded there:
    :func:`panel_dots` (one center at a time over 8 vectors of rows) reloads every row
    vector for each center, one load per multiply-add, and its values go through memory
    before the fold; here each feature's row vectors serve ``n_centers`` centers and
    each center's broadcast value ``n_vectors`` row vectors. Each sum is
    :func:`panel_dots`' (from 0, feature after feature, one fused multiply-add each) and
    each fold :func:`gpukmeans._cpu_nearest._fold_center`'s (the norm added, then ``<``,
    a lower index keeping an equal value, ``min`` as Numba's), so the results are those of
    :func:`panel_dots` and :func:`gpukmeans._cpu_nearest._fold_centers` bit for bit.
    ``rows_t`` and ``minus_two_centers`` have unit stride along their rows, the 1-d arrays
    unit stride; no bounds are checked."""

    @intrinsic
    def panel_nearest(typingctx, rows_t, start, minus_two_centers, centers_squared_norms,
                      center, best, best_value, second_value, out_start):
        matrices = (rows_t, minus_two_centers)
        vectors = (centers_squared_norms, best, best_value, second_value)
        if not (all(isinstance(array, types.Array) and array.ndim == 2 and array.layout != "F"
                    for array in matrices)
                and all(isinstance(array, types.Array) and array.ndim == 1
                        for array in vectors)):
            return None
        dtype = rows_t.dtype
        if dtype not in (types.float32, types.float64) or not (
                minus_two_centers.dtype == centers_squared_norms.dtype == best_value.dtype
                == second_value.dtype == dtype) or best.dtype != types.int32:
            return None

        def codegen(context, builder, signature, args):
            scalar = context.get_data_type(dtype)
            itemsize = context.get_abi_sizeof(scalar)
            lanes = VECTOR_BYTES // itemsize
            vector = ir.VectorType(scalar, lanes)
            int32 = ir.IntType(32)
            labels_vector = ir.VectorType(int32, lanes)
            intp = cgutils.intp_t
            fma = _declare_fma(builder.module, vector)
            (rows, centers, norms, nearest_out, best_out, second_out) = (
                make_array(signature.args[index])(context, builder, args[index])
                for index in (0, 2, 3, 5, 6, 7))
            start_value, center_value, out_value = (
                context.cast(builder, args[index], signature.args[index], types.intp)
                for index in (1, 4, 8))
            n_features = cgutils.unpack_tuple(builder, rows.shape)[0]
            itemsize_value = context.get_constant(types.intp, itemsize)
            rows_stride, centers_stride = (
                builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0], itemsize_value)
                for array in (rows, centers))
            block = builder.gep(rows.data, [start_value])
            center_pointers = [
                builder.gep(centers.data, [builder.mul(
                    builder.add(center_value, ir.Constant(intp, c)), centers_stride)])
                for c in range(n_centers)]
            lane_zero = ir.Constant(int32, 0)
            broadcast_mask = ir.Constant(ir.VectorType(int32, lanes), None)

            def broadcast(value, vector_type=vector):
                empty = ir.Constant(vector_type, ir.Undefined)
                return builder.shuffle_vector(builder.insert_element(empty, value, lane_zero),
                                              empty, broadcast_mask)

            def vector_pointer(pointer, index, pointee=vector):
                return builder.bitcast(builder.gep(pointer, [index]), pointee.as_pointer())

            # Stack slots, promoted to registers by LLVM (each only loaded and stored whole).
            sums = [[cgutils.alloca_once(builder, vector) for _ in range(n_centers)]
                    for _ in range(n_vectors)]
            for row_sums in sums:
                for accumulator in row_sums:
                    builder.store(ir.Constant(vector, None), accumulator)
            with cgutils.for_range(builder, n_features) as feature_loop:
                row = builder.gep(block, [builder.mul(feature_loop.index, rows_stride)])
                xs = [builder.load(vector_pointer(row, ir.Constant(intp, v * lanes)),
                                   align=itemsize) for v in range(n_vectors)]
                for c, pointer in enumerate(center_pointers):
                    values = broadcast(builder.load(builder.gep(pointer, [feature_loop.index])))
                    for v, x in enumerate(xs):
                        accumulator = sums[v][c]
                        builder.store(builder.call(fma, [x, values, builder.load(accumulator)]),
                                      accumulator)
            center_norms = [broadcast(builder.load(builder.gep(norms.data, [
                builder.add(center_value, ir.Constant(intp, c))]))) for c in range(n_centers)]
            center_labels = [broadcast(builder.trunc(builder.add(
                center_value, ir.Constant(intp, c)), int32), labels_vector)
                for c in range(n_centers)]
            for v in range(n_vectors):
                offset = builder.add(out_value, ir.Constant(intp, v * lanes))
                pointers = (vector_pointer(nearest_out.data, offset, labels_vector),
                            vector_pointer(best_out.data, offset),
                            vector_pointer(second_out.data, offset))
                nearest, current, second = (builder.load(pointer, align=4 if i == 0 else itemsize)
                                            for i, pointer in enumerate(pointers))
                for c in range(n_centers):
                    value = builder.fadd(center_norms[c], builder.load(sums[v][c]))
                    closer = builder.fcmp_ordered("<", value, current)
                    below_second = builder.fcmp_ordered("<", value, second)
                    nearest = builder.select(closer, center_labels[c], nearest)
                    second = builder.select(closer, current,
                                            builder.select(below_second, value, second))
                    current = builder.select(closer, value, current)
                for i, (pointer, result) in enumerate(zip(pointers, (nearest, current, second))):
                    builder.store(result, pointer, align=4 if i == 0 else itemsize)
            return context.get_dummy_value()

        return (types.void(rows_t, start, minus_two_centers, centers_squared_norms, center,
                           best, best_value, second_value, out_start), codegen)

    return panel_nearest


# Rows x centers of panel_nearest's sums: with 512-bit vectors (32 registers) 4 vectors
# of rows x 6 centers (24 sums, 4 row vectors, a broadcast value); with 256-bit ones
# (AVX2's 16) 3 x 4 (12 + 3 + 1: all sixteen). On a Zen 3 EPYC (AVX2 only), one
# thread, labels of 50,000 blob rows in 256-row chunks, alternated, medians of 7, ms,
# 2 x 5 (stop 61's, chosen on the AVX-512 Xeon compiling for Haswell) / 3 x 4: d=32
# k=16 1.34 / 1.16, k=64 3.97 / 3.47, k=1,024 58.3 / 52.8; d=16 k=32 1.12 / 0.99,
# k=1,024 30.3 / 26.9; d=8 k=512 7.82 / 7.39; d=2 k=64 0.73 / 0.61; d=24 k=48 3.06 /
# 2.69; d=64 k=256 25.9 / 23.2; d=128 k=512 106 / 90.7 (72 GF/s, the core's SGEMM 93);
# 4 x 3 (17 registers: spilled) took 2-2.3x as long, 3 x 3 and 2 x 6 about 2 x 5's.
# The same labels and values with any shape.
NEAREST_VECTORS, NEAREST_CENTERS = (4, 6) if VECTOR_BYTES == 64 else (3, 4)
panel_nearest = _make_panel_nearest(NEAREST_VECTORS, NEAREST_CENTERS)
panel_nearest_one = _make_panel_nearest(NEAREST_VECTORS, 1)
# A chunk's last rows, where they fit in a vector fewer than a whole block: 256-row
# chunks leave 16 rows after ten blocks of 24 with AVX2, which a block of 2 vectors
# covers instead of 24 rows of which 8 are zeros (d=16 k=1,024 above: 28.4 ms padded,
# 26.9 so; d=128 k=512 97.7 / 90.7).
panel_nearest_narrow = _make_panel_nearest(NEAREST_VECTORS - 1, NEAREST_CENTERS)
panel_nearest_narrow_one = _make_panel_nearest(NEAREST_VECTORS - 1, 1)


def nearest_block_rows(itemsize):
    """Rows a :func:`panel_nearest` call covers."""
    return NEAREST_VECTORS * (VECTOR_BYTES // itemsize)


_nearest_block_rows = njit(nogil=True, cache=CACHE)(nearest_block_rows)


@njit(nogil=True, cache=CACHE)
def panel_scratch_size(itemsize, n_features, chunk_rows):
    """Values of scratch :func:`panel_chunk_nearest` needs for a chunk of ``chunk_rows``."""
    block = _nearest_block_rows(itemsize)
    return n_features * ((chunk_rows + block - 1) // block * block)


@njit(nogil=True, cache=CACHE)
def start_nearest_two(n_rows, best, best_value, second_value):
    """Each row's nearest two before any center is folded in: center 0, both values inf
    (the folds' starting point, here and in :mod:`gpukmeans._cpu_nearest`)."""
    inf = best_value.dtype.type(np.inf)
    for i in range(n_rows):
        best[i] = 0
        best_value[i] = inf
        second_value[i] = inf


@njit(nogil=True, cache=CACHE)
def panel_chunk_nearest(
    X,  # IN (n_samples, n_features)
    chunk_start,
    chunk_end,
    minus_two_centers,  # IN (n_clusters, n_features) X.dtype: -2 c
    centers_squared_norms,  # IN (n_clusters,) X.dtype
    scratch,  # SCRATCH (>= panel_scratch_size(X.itemsize, n_features, chunk),) X.dtype
    best,  # OUT (>= chunk,) int32: the argmin of the values (lowest index on equal values)
    best_value,  # OUT (>= chunk,) X.dtype: the smallest value
    second_value,  # OUT (>= chunk,) X.dtype: the second smallest (inf for one center)
):
    """The nearest two centers of the rows ``chunk_start:chunk_end`` by
    :func:`panel_nearest`: the chunk transposed (zeros after its last row up to a whole
    block, whose lanes' results are dropped), then each group of centers, in order, over
    each block of rows. The bits of :func:`transposed_chunk_dots` folded by
    :func:`gpukmeans._cpu_nearest._fold_centers`. The plain step's ``BY_PANEL``: a GEMM
    packs the chunk and writes its values out before the fold, and a dot product of a
    few features is too short to vectorise over them; the transposition of the chunk
    costs less (see :func:`gpukmeans._cpu._dots_kernel`)."""
    n_rows = chunk_end - chunk_start
    n_features = X.shape[1]
    n_clusters = minus_two_centers.shape[0]
    block = _nearest_block_rows(X.itemsize)
    n_padded = (n_rows + block - 1) // block * block
    rows_t = scratch[: n_features * n_padded].reshape((n_features, n_padded))
    transpose_rows(X, chunk_start, chunk_end, rows_t)
    zero = X.dtype.type(0)
    for f in range(n_features):
        for i in range(n_rows, n_padded):
            rows_t[f, i] = zero
    n_whole = n_rows - n_rows % block
    # The last block's fold, padded to a whole block, or to one a vector narrower where
    # that holds the rows left.
    n_tail = block if n_whole < n_rows else 0
    narrow_tail = n_rows - n_whole <= block - block // NEAREST_VECTORS
    tail = np.empty(n_tail, dtype=np.int32)
    tail_value = np.empty(n_tail, dtype=X.dtype)
    tail_second = np.empty(n_tail, dtype=X.dtype)
    start_nearest_two(n_rows, best, best_value, second_value)
    start_nearest_two(n_tail, tail, tail_value, tail_second)
    n_grouped = n_clusters - n_clusters % NEAREST_CENTERS
    for center in range(0, n_grouped, NEAREST_CENTERS):
        for start in range(0, n_whole, block):
            panel_nearest(rows_t, start, minus_two_centers, centers_squared_norms, center,
                          best, best_value, second_value, start)
        if n_tail and narrow_tail:
            panel_nearest_narrow(rows_t, n_whole, minus_two_centers, centers_squared_norms,
                                 center, tail, tail_value, tail_second, 0)
        elif n_tail:
            panel_nearest(rows_t, n_whole, minus_two_centers, centers_squared_norms, center,
                          tail, tail_value, tail_second, 0)
    for center in range(n_grouped, n_clusters):
        for start in range(0, n_whole, block):
            panel_nearest_one(rows_t, start, minus_two_centers, centers_squared_norms, center,
                              best, best_value, second_value, start)
        if n_tail and narrow_tail:
            panel_nearest_narrow_one(rows_t, n_whole, minus_two_centers,
                                     centers_squared_norms, center, tail, tail_value,
                                     tail_second, 0)
        elif n_tail:
            panel_nearest_one(rows_t, n_whole, minus_two_centers, centers_squared_norms,
                              center, tail, tail_value, tail_second, 0)
    for i in range(n_rows - n_whole):
        best[n_whole + i] = tail[i]
        best_value[n_whole + i] = tail_value[i]
        second_value[n_whole + i] = tail_second[i]
