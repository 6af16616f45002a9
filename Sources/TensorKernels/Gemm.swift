import CBLAS
#if canImport(Glibc)
import Glibc
#endif

/// Matrix products through OpenBLAS's CBLAS interface.
///
/// A matrix operand is described by a base pointer, a leading dimension and a
/// transpose flag, as BLAS wants; row-major storage throughout. Callers turn a
/// strided 2-D view into that form with `blasOperand(rows:cols:rowStride:colStride:)`.

/// How a strided 2-D view maps to a BLAS operand, or nil when it needs a copy.
public struct BlasOperand: Sendable, Equatable {
    public var transposed: Bool
    public var leadingDimension: Int
    @inlinable public init(transposed: Bool, leadingDimension: Int) {
        self.transposed = transposed
        self.leadingDimension = leadingDimension
    }
}

/// Describes a rows x cols view with the given element strides as a BLAS operand.
///
/// Row-major (colStride 1) is used as is; column-major (rowStride 1) as a transposed
/// operand; anything else returns nil (copy to contiguous first).
@inlinable
public func blasOperand(rows: Int, cols: Int, rowStride: Int, colStride: Int) -> BlasOperand? {
    if cols == 1 || colStride == 1 {
        let ld = rows == 1 ? max(cols, 1) : rowStride
        if ld >= max(cols, 1) { return BlasOperand(transposed: false, leadingDimension: ld) }
    }
    if rows == 1 || rowStride == 1 {
        let ld = cols == 1 ? max(rows, 1) : colStride
        if ld >= max(rows, 1) { return BlasOperand(transposed: true, leadingDimension: ld) }
    }
    return nil
}

/// C = alpha * op(A) * op(B) + beta * C for Float32, row-major. A is m x k, B is k x n
/// after `op`; C is m x n with leading dimension ldc.
@inlinable
public func sgemm(
    m: Int, n: Int, k: Int, alpha: Float = 1,
    a: UnsafePointer<Float>, aOp: BlasOperand,
    b: UnsafePointer<Float>, bOp: BlasOperand,
    beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        scaleMatrix(c, m: m, n: n, ldc: ldc, beta: beta)
        return
    }
    cblas_sgemm(CblasRowMajor, aOp.transposed ? CblasTrans : CblasNoTrans, bOp.transposed ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(aOp.leadingDimension),
                b, blasint(bOp.leadingDimension), beta, c, blasint(ldc))
}

/// C = alpha * op(A) * op(B) + beta * C for Float64, row-major.
@inlinable
public func dgemm(
    m: Int, n: Int, k: Int, alpha: Double = 1,
    a: UnsafePointer<Double>, aOp: BlasOperand,
    b: UnsafePointer<Double>, bOp: BlasOperand,
    beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        scaleMatrix(c, m: m, n: n, ldc: ldc, beta: beta)
        return
    }
    cblas_dgemm(CblasRowMajor, aOp.transposed ? CblasTrans : CblasNoTrans, bOp.transposed ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(aOp.leadingDimension),
                b, blasint(bOp.leadingDimension), beta, c, blasint(ldc))
}

@inlinable
public func scaleMatrix<T: BinaryFloatingPoint>(_ c: UnsafeMutablePointer<T>, m: Int, n: Int, ldc: Int, beta: T) {
    for i in 0..<m {
        for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : c[i * ldc + j] * beta }
    }
}

/// Element types with a BLAS GEMM.
public protocol GemmScalar: BinaryFloatingPoint {
    static func gemm(m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, aOp: BlasOperand,
                     b: UnsafePointer<Self>, bOp: BlasOperand, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
}

extension Float: GemmScalar {
    @inlinable public static func gemm(m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, aOp: BlasOperand,
                                       b: UnsafePointer<Float>, bOp: BlasOperand, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        sgemm(m: m, n: n, k: k, alpha: alpha, a: a, aOp: aOp, b: b, bOp: bOp, beta: beta, c: c, ldc: ldc)
    }
}

extension Double: GemmScalar {
    @inlinable public static func gemm(m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, aOp: BlasOperand,
                                       b: UnsafePointer<Double>, bOp: BlasOperand, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int) {
        dgemm(m: m, n: n, k: k, alpha: alpha, a: a, aOp: aOp, b: b, bOp: bOp, beta: beta, c: c, ldc: ldc)
    }
}

/// Batched GEMM: for each batch index i, C_i = alpha * op(A_i) op(B_i) + beta * C_i, with
/// fixed element strides between batch matrices (0 broadcasts one matrix to all).
@inlinable
public func batchedGemm<T: GemmScalar>(
    batch: Int, m: Int, n: Int, k: Int, alpha: T = 1,
    a: UnsafePointer<T>, aOp: BlasOperand, aBatchStride: Int,
    b: UnsafePointer<T>, bOp: BlasOperand, bBatchStride: Int,
    beta: T = 0, c: UnsafeMutablePointer<T>, ldc: Int, cBatchStride: Int
) {
    for i in 0..<batch {
        T.gemm(m: m, n: n, k: k, alpha: alpha, a: a + i * aBatchStride, aOp: aOp,
               b: b + i * bBatchStride, bOp: bOp, beta: beta, c: c + i * cBatchStride, ldc: ldc)
    }
}

/// OpenBLAS's thread count and detected core, for start-up logs and benchmarks.
public enum BlasInfo {
    public static var threads: Int { Int(openblas_get_num_threads()) }
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// How long OpenBLAS's idle worker threads spin before they sleep: about 2^exponent
    /// CPU cycles (OpenBLAS clamps to 4...30; its default is 28, a ~0.1 s spin after every
    /// threaded GEMM). Loom's own workers run the convolutions while OpenBLAS's threads
    /// wait for their next GEMM: spinning (with `sched_yield`) they took the cores from
    /// Loom's workers, and a `perf` of lenet5 training showed a third of the CPU in the
    /// scheduler. The `loom` executable sets `OPENBLAS_THREAD_TIMEOUT` (when the user has
    /// not) and calls this at start. Restarts OpenBLAS's thread pool: call it while no
    /// BLAS call runs. Returns false when the loaded BLAS does not expose the OpenBLAS
    /// pthread entry points (then nothing changes).
    ///
    /// OpenBLAS reads the value from `OPENBLAS_THREAD_TIMEOUT` when it starts its threads,
    /// so this sets the variable, has OpenBLAS re-read its environment and restarts the pool.
    @discardableResult
    public static func setThreadTimeout(exponent: Int) -> Bool {
        precondition((4...30).contains(exponent), "BlasInfo.setThreadTimeout: exponent \(exponent) must be in 4...30")
        typealias Void0 = @convention(c) () -> Void
        typealias Int0 = @convention(c) () -> Int32
        let handle = UnsafeMutableRawPointer(bitPattern: 0)  // RTLD_DEFAULT
        guard let readEnv = dlsym(handle, "openblas_read_env"), let shutdown = dlsym(handle, "blas_thread_shutdown_"),
              let initialize = dlsym(handle, "blas_thread_init") else { return false }
        setenv("OPENBLAS_THREAD_TIMEOUT", String(exponent), 1)
        let threads = BlasInfo.threads
        unsafeBitCast(readEnv, to: Void0.self)()
        _ = unsafeBitCast(shutdown, to: Int0.self)()
        _ = unsafeBitCast(initialize, to: Int0.self)()
        setThreads(threads)
        return true
    }
}
