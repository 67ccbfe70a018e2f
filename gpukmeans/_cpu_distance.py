"""Squared distances and norms in float64 whose bits do not depend on the code around them.

Every pass that measures a sample against its center (a run's final E-step, the inertia
pass, ``score``, a streamed fit's blocks) must give the same bits, or a fit's
``inertia_`` and ``-score(X)``, and a streamed and an in-memory fit, differ in their last
digits. A Numba loop compiled with ``fastmath={"reassoc", "contract"}`` vectorises, but
leaves the order of its sum and its fused multiply-adds to LLVM in each kernel that
inlines it: CI once saw the final E-step's inertia and the inertia pass an ulp apart
(float64, 2 features), the one kernel loaded from a cache an earlier process wrote, the
other compiled fresh, their copies summing ``fma(d0, d0, d1^2)`` and ``fma(d1, d1,
d0^2)``. Without those flags Numba's loop stays scalar: 2.6-8x slower here.

:func:`squared_distance_f64` writes the vectorised order out in LLVM IR, with no
fast-math flags, so LLVM may not change it: 16 lanes of float64 differences squared
(``(x - c)^2``, no fused multiply-add) summed lane by lane in two 8-lane accumulators, the
accumulators added, reduced by halves (8 -> 4 -> 2 -> 1), then the features after the last
whole 16 added one at a time. The lanes are fixed, not the CPU's: the same bits on AVX-512,
AVX2 or any other vector unit, and inlined anywhere.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from ._cpu_runtime import CACHE

LANES = 8
"""float64 lanes of an accumulator."""
ACCUMULATORS = 2
"""Accumulators, so that two additions are in flight (an addition's latency)."""


def _squared_distance_codegen(context, builder, x_type, c_type, x_value, c_value):
    """IR of ``sum_f (x[f] - c[f])^2`` in float64 (``c`` None: ``sum_f x[f]^2``), in the
    order the module docstring gives; strided rows are read value by value into the same
    vectors (the same bits)."""
    double = ir.DoubleType()
    vector = ir.VectorType(double, LANES)
    operands = [(x_type, make_array(x_type)(context, builder, x_value))]
    if c_type is not None:
        operands.append((c_type, make_array(c_type)(context, builder, c_value)))
    n_features = cgutils.unpack_tuple(builder, operands[0][1].shape)[0]
    step = LANES * ACCUMULATORS
    n_blocks = builder.sdiv(n_features, context.get_constant(types.intp, step))
    zero = ir.Constant(vector, None)
    accumulators = [cgutils.alloca_once_value(builder, zero) for _ in range(ACCUMULATORS)]
    total = cgutils.alloca_once_value(builder, ir.Constant(double, 0.0))

    # Strides in bytes: a row's items need not lie a whole number of items apart (a field
    # of a structured array).
    strides = [cgutils.unpack_tuple(builder, array.strides)[0] for _, array in operands]

    def item_size(array_type):
        return context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(array_type.dtype)))

    unit = [builder.icmp_signed("==", stride, item_size(ty))
            for (ty, _), stride in zip(operands, strides)]
    unit = builder.and_(*unit) if len(unit) == 2 else unit[0]

    def item_at(array_type, array, stride, index):
        scalar = context.get_data_type(array_type.dtype)
        byte = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()),
                           [builder.mul(index, stride)])
        return to_double(array_type, builder.load(builder.bitcast(byte, scalar.as_pointer()),
                                                  align=1))

    def to_double(array_type, value):
        if array_type.dtype == types.float64:
            return value
        target = vector if isinstance(value.type, ir.VectorType) else double
        return builder.fpext(value, target)

    def lanes_at(array_type, array, stride, first, contiguous):
        scalar = context.get_data_type(array_type.dtype)
        if contiguous:
            pointer = builder.bitcast(builder.gep(array.data, [first]),
                                      ir.VectorType(scalar, LANES).as_pointer())
            return to_double(array_type, builder.load(
                pointer, align=context.get_abi_sizeof(scalar)))
        values = ir.Constant(vector, ir.Undefined)
        for lane in range(LANES):
            index = builder.add(first, context.get_constant(types.intp, lane))
            values = builder.insert_element(values, item_at(array_type, array, stride, index),
                                            ir.Constant(ir.IntType(32), lane))
        return values

    def squared_lanes(first, contiguous):
        loaded = [lanes_at(ty, array, stride, first, contiguous)
                  for (ty, array), stride in zip(operands, strides)]
        difference = loaded[0] if len(loaded) == 1 else builder.fsub(loaded[0], loaded[1])
        return builder.fmul(difference, difference)

    def blocks(contiguous):
        with cgutils.for_range(builder, n_blocks) as loop:
            base = builder.mul(loop.index, context.get_constant(types.intp, step))
            for a, accumulator in enumerate(accumulators):
                first = builder.add(base, context.get_constant(types.intp, a * LANES))
                builder.store(builder.fadd(builder.load(accumulator),
                                           squared_lanes(first, contiguous)), accumulator)

    def blocks_summed():
        with builder.if_else(unit) as (contiguous, strided):
            with contiguous:
                blocks(True)
            with strided:
                blocks(False)
        summed = builder.load(accumulators[0])
        for accumulator in accumulators[1:]:
            summed = builder.fadd(summed, builder.load(accumulator))
        width = LANES
        while width > 1:  # halves: lanes [0, w/2) + lanes [w/2, w)
            half = width // 2
            int32_vector = ir.VectorType(ir.IntType(32), half)
            low = builder.shuffle_vector(summed, summed,
                                         ir.Constant(int32_vector, list(range(half))))
            high = builder.shuffle_vector(summed, summed,
                                          ir.Constant(int32_vector, list(range(half, width))))
            summed = builder.fadd(low, high)
            width = half
        builder.store(builder.extract_element(summed, ir.Constant(ir.IntType(32), 0)), total)

    # Rows shorter than a block skip it: its sum would be +0.0, the total's start.
    with builder.if_then(builder.icmp_signed(">", n_blocks, context.get_constant(types.intp, 0))):
        blocks_summed()
    with cgutils.for_range(builder, builder.sub(n_features, builder.mul(
            n_blocks, context.get_constant(types.intp, step)))) as loop:
        feature = builder.add(builder.mul(n_blocks, context.get_constant(types.intp, step)),
                              loop.index)
        values = [item_at(ty, array, stride, feature)
                  for (ty, array), stride in zip(operands, strides)]
        difference = values[0] if len(values) == 1 else builder.fsub(values[0], values[1])
        builder.store(builder.fadd(builder.load(total), builder.fmul(difference, difference)),
                      total)
    return builder.load(total)


def _is_float_row(array):
    return (isinstance(array, types.Array) and array.ndim == 1
            and array.dtype in (types.float32, types.float64))


@intrinsic
def _squared_distance_ir(typingctx, x, c):
    """``||x - c||^2`` in float64 from the differences (1-d float32 or float64 rows of
    equal length, any strides; lengths are not checked), in the fixed order of the
    module docstring."""
    if not (_is_float_row(x) and _is_float_row(c)):
        return None

    def codegen(context, builder, signature, args):
        return _squared_distance_codegen(context, builder, signature.args[0],
                                         signature.args[1], args[0], args[1])

    return types.float64(x, c), codegen


@intrinsic
def _squared_norm_ir(typingctx, x):
    """``||x||^2`` in float64 (a 1-d float32 or float64 row, any stride), in the same fixed
    order as :func:`_squared_distance_ir`."""
    if not _is_float_row(x):
        return None

    def codegen(context, builder, signature, args):
        return _squared_distance_codegen(context, builder, signature.args[0], None,
                                         args[0], None)

    return types.float64(x), codegen


# fastmath=False, said: a function that says nothing takes its first caller's flags
# (Numba), which would put fast-math flags on the IR above. forceinline: called per row,
# at a few features the call itself would cost as much as the sum.
@njit(nogil=True, fastmath=False, forceinline=True, cache=CACHE)
def squared_distance_f64(x, c):
    """``||x - c||^2`` in float64 from the differences, in the fixed order of the module
    docstring (``x``, ``c``: 1-d float32 or float64 rows of one length)."""
    return _squared_distance_ir(x, c)


@njit(nogil=True, fastmath=False, forceinline=True, cache=CACHE)
def squared_norm_f64(x):
    """``||x||^2`` in float64, in the same order as :func:`squared_distance_f64`."""
    return _squared_norm_ir(x)


@njit(nogil=True, cache=CACHE)
def reference_squared_distance_f64(x, c):
    """:func:`squared_distance_f64`'s order written as a plain loop (for the tests)."""
    step = LANES * ACCUMULATORS
    n_blocks = x.shape[0] // step
    lanes = [0.0] * step
    for block in range(n_blocks):
        for lane in range(step):
            f = block * step + lane
            d = np.float64(x[f]) - np.float64(c[f])
            lanes[lane] += d * d
    summed = [lanes[i] + lanes[LANES + i] for i in range(LANES)]
    width = LANES
    while width > 1:
        half = width // 2
        summed = [summed[i] + summed[half + i] for i in range(half)]
        width = half
    total = summed[0]
    for f in range(n_blocks * step, x.shape[0]):
        d = np.float64(x[f]) - np.float64(c[f])
        total += d * d
    return total
