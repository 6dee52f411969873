import CBLAS

/// The one place that calls BLAS. Row-major `C[m x n] = A[m x k] * B[k x n] + beta * C`,
/// each matrix with its own leading dimension so views into wider buffers work.
@inline(__always)
func sgemm(
    m: Int, n: Int, k: Int,
    a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int,
    beta: Float = 0
) {
    cblas_sgemm(
        CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
        1, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

public enum BLASThreads {
    /// OpenBLAS's own thread pool runs every GEMM; this sets its size process-wide.
    public static func set(_ count: Int) {
        openblas_set_num_threads(Int32(count))
    }

    /// The pool's size as OpenBLAS reports it.
    public static var current: Int { Int(openblas_get_num_threads()) }
}
