"""scikit-learn's GEMM call for float64 labels, from compiled kernels.

scikit-learn's E-step (``_update_chunk_dense``) fills a chunk's values with ``||c||^2``
and calls ``gemm(RowMajor, NoTrans, Trans, ..., alpha=-2, X_chunk, centers, beta=1,
values)``: the BLAS adds ``-2 x.c`` onto the norms. Beyond the BLAS's depth block (256
features for OpenBLAS's float64 kernels here) it adds the product a block of features at
a time, each onto the running values, so the norms enter the sum first; Numba's
``np.dot`` (beta=0, then the norms added) sums them last, and from 257 features a
float64 near-tie could go the other way (23 rows of 51,200 at 300 features, in a
batch's labels; whole MiniBatchKMeans and KMeans fits then parted). Numba's ``np.dot``
also calls GEMV for a single row or center, where scikit-learn calls GEMM. This calls
the same BLAS (SciPy's, through Numba's ``numba_xxgemm`` helper, as ``np.dot`` does,
so the kernels that use it stay cacheable) with scikit-learn's arguments.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import check_blas_return, ensure_blas, get_blas_kind

_CHAR = ir.IntType(8)
_VOID_P = _CHAR.as_pointer()
_INTP = cgutils.intp_t


@intrinsic
def gemm_nt_accumulate(typingctx, alpha, a, b, c):
    """``c = alpha * a @ b.T + c`` by the BLAS GEMM, called as scikit-learn calls it for
    row-major ``a`` (m, k), ``b`` (n, k) and ``c`` (m, n), each with unit stride along
    its rows (a slice of rows of a C-contiguous array is one); m, n, k > 0."""
    if not all(isinstance(arg, types.Array) and arg.ndim == 2 for arg in (a, b, c)):
        return None
    if not a.dtype == b.dtype == c.dtype or a.dtype not in (types.float32, types.float64):
        return None
    ensure_blas()

    def codegen(context, builder, signature, args):
        alpha_value, a_value, b_value, c_value = args
        dtype = signature.args[1].dtype
        arrays = [make_array(ty)(context, builder, value)
                  for ty, value in zip(signature.args[1:], (a_value, b_value, c_value))]
        itemsize = context.get_constant(types.intp, context.get_abi_sizeof(
            context.get_data_type(dtype)))
        # Leading dimensions in elements: each array's row stride.
        lda, ldb, ldc = (builder.sdiv(cgutils.unpack_tuple(builder, array.strides)[0],
                                      itemsize) for array in arrays)
        m, k = cgutils.unpack_tuple(builder, arrays[0].shape)
        n = cgutils.unpack_tuple(builder, arrays[1].shape)[0]
        alpha_slot = cgutils.alloca_once_value(
            builder, context.cast(builder, alpha_value, signature.args[0], dtype))
        beta_slot = cgutils.alloca_once_value(
            builder, context.get_constant_generic(builder, dtype, 1.0))
        function_type = ir.FunctionType(ir.IntType(32), [
            _CHAR, _CHAR, _CHAR, _INTP, _INTP, _INTP, _VOID_P, _VOID_P, _INTP, _VOID_P,
            _INTP, _VOID_P, _VOID_P, _INTP])
        function = cgutils.get_or_insert_function(builder.module, function_type,
                                                  "numba_xxgemm")
        # Column-major, as scikit-learn's row-major call becomes: c^T = b a^T, so
        # gemm("t", "n", n, m, k, alpha, b, ldb, a, lda, beta, c, ldc).
        result = builder.call(function, (
            ir.Constant(_CHAR, ord(get_blas_kind(dtype))),
            ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")),
            n, m, k, builder.bitcast(alpha_slot, _VOID_P),
            builder.bitcast(arrays[1].data, _VOID_P), ldb,
            builder.bitcast(arrays[0].data, _VOID_P), lda,
            builder.bitcast(beta_slot, _VOID_P),
            builder.bitcast(arrays[2].data, _VOID_P), ldc,
        ))
        check_blas_return(context, builder, result)
        return context.get_dummy_value()

    return types.void(alpha, a, b, c), codegen
