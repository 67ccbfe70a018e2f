"""Planted bugs: copies of ``kernels/`` with one known fault each, which the harness must catch.

Each mutant names the kind of bug, the file, the text replaced, and the emulator variant
that must catch it (an out-of-bounds read that does not change any output is visible only
to AddressSanitizer). ``tests/test_cudaemu.py`` builds each one and runs the shape matrix
on it; the run must fail.
"""

import pathlib
import shutil
from typing import NamedTuple


class Mutant(NamedTuple):
    filename: str
    old: str
    new: str
    variant: str
    """The emulator build that must catch it: ``plain`` or ``asan``."""
    checks: str
    """The matrix checks that exercise the mutated code (comma-separated)."""


MUTANTS = {
    # The tie rule reversed: the highest index wins equal distances.
    "tie_highest": Mutant("common.cuh", "other_index < best_index", "other_index > best_index",
                          "plain", "fused,gemm,e_step"),
    # A missing __syncthreads: the next tile load overwrites a tile still being read.
    "no_syncthreads_tile": Mutant(
        "assign.cu",
        "        __syncthreads();  // the next tile load overwrites x_tile / y_tile\n", "\n",
        "plain", "fused,pairwise"),
    # A missing __syncwarp: the leader moves the cursor before its peers have read it.
    "no_syncwarp_order": Mutant(
        "update.cu",
        "        __syncwarp();  // every peer has read *slot before it moves\n", "\n",
        "plain", "accumulate,lloyd"),
    # An off-by-one row bound: the tiles read one row past the end of X and the centers.
    "tile_row_oob": Mutant("assign.cu", "(row < n_rows && feature < n_features)",
                           "(row <= n_rows && feature < n_features)", "asan", "fused,pairwise"),
    # A race between blocks: every block of pairwise_distances also writes row 0.
    "interblock_race": Mutant(
        "assign.cu",
        "                out[sample * n_clusters + cluster] = T(sqrt(sq[i][j]));\n",
        "                out[sample * n_clusters + cluster] = T(sqrt(sq[i][j]));\n"
        "                if (ty == 0) out[cluster] = T(blockIdx.x);\n",
        "plain", "pairwise"),
    # NumPy's tree joined in another order: the 8 running sums added as r0 + r4, ... first.
    "pairwise_other_tree": Mutant(
        "reduce.cu", "for (int offset = 1; offset < PAIRWISE_LANES; offset <<= 1) {",
        "for (int offset = PAIRWISE_LANES / 2; offset > 0; offset >>= 1) {", "plain",
        "assigned"),
    # Segments past the last sample read its label and row out of bounds instead of the
    # last sample's.
    "pairwise_tail_oob": Mutant(
        "reduce.cu", "const index_t source = row < n_samples ? row : n_samples - 1;",
        "const index_t source = row;", "asan", "assigned"),
    # The CSR M-step reads one entry past its column (into the next column, or past nnz).
    "csc_column_oob": Mutant("sparse.cu", "p < column_ptr[feature + 1]; ++p)",
                             "p <= column_ptr[feature + 1]; ++p)", "asan", "sparse"),
    # The CSR E-step skips the last stored entry of every row.
    "csr_row_short": Mutant("sparse.cu", "for (index_t k = start; k < end; ++k) {",
                            "for (index_t k = start; k + 1 < end; ++k) {", "plain", "sparse"),
}


def plant(name, kernel_dir, destination):
    """Copy ``kernel_dir`` to ``destination`` with mutant ``name`` planted; return it."""
    mutant = MUTANTS[name]
    destination = pathlib.Path(destination)
    shutil.copytree(kernel_dir, destination)
    path = destination / mutant.filename
    text = path.read_text()
    if text.count(mutant.old) != 1:
        raise ValueError(f"mutant {name}: {mutant.old!r} occurs {text.count(mutant.old)} times "
                         f"in {mutant.filename}; update tests/cudaemu/mutants.py with the kernels")
    path.write_text(text.replace(mutant.old, mutant.new))
    return destination
