#if canImport(Glibc)
import Glibc
#endif

/// Numerically stable softmax / log-softmax along one dimension.
///
/// softmax(x)ᵢ = exp(xᵢ − m) / Σⱼ exp(xⱼ − m) and log-softmax(x)ᵢ = (xᵢ − m) − log Σⱼ exp(xⱼ − m),
/// with m the maximum along the dim, so large logits do not overflow. A line holding NaN
/// or +inf gives NaN (as IEEE arithmetic says); a line of -inf gives NaN, as in PyTorch.
///
/// The source is first copied into the dense destination; each block [n, inner] (n the
/// dim's extent, inner the product of the later dims) is then processed in place row by
/// row, so every pass is contiguous whatever the dim: a softmax over dim 0 of a matrix
/// streams rows instead of walking columns. Float32 uses the vectorised `vectorExp`.
/// Blocks are split across threads when there is enough work. Complexity: O(elements),
/// about four passes over each block (one over the source).
@inlinable
public func softmaxAlongDim<T: BinaryFloatingPoint & ElementaryMath>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int,
    _ dst: UnsafeMutablePointer<T>, log: Bool
) {
    let n = shape[dim]
    let total = elementCount(shape)
    if n == 0 || total == 0 { return }
    copyStrided(src, srcStrides: strides, srcOffset: offset, dst, dstStrides: contiguousStrides(shape), dstOffset: 0, shape: shape)
    var inner = 1
    for d in (dim + 1)..<shape.count { inner *= shape[d] }
    let outer = total / (n * inner)
    let grain = Swift.max(1, (KernelThreading.minChunk / 8) / (n * inner))
    let out = UnsafeSendableBox(dst)
    parallelChunks(count: outer, grain: grain) { range in
        let dst = out.value
        // Per-column max and sum, and a row of exponentials (a 1024-chunk for inner == 1).
        let scratch = UnsafeMutablePointer<T>.allocate(capacity: 2 * inner + Swift.max(inner, 1024))
        defer { scratch.deallocate() }
        let colMax = scratch, colSum = scratch + inner, expRow = scratch + 2 * inner
        for o in range {
            let block = dst + o * n * inner
            if inner == 1 {
                softmaxLineInPlace(block, count: n, log: log, tmp: expRow)
                continue
            }
            // Column maxima (NaN-propagating).
            colMax.update(from: block, count: inner)
            for j in 1..<n {
                let row = block + j * inner
                for c in 0..<inner { let v = row[c]; if v > colMax[c] || v.isNaN { colMax[c] = v } }
            }
            colSum.update(repeating: 0, count: inner)
            for j in 0..<n {
                let row = block + j * inner
                for c in 0..<inner { row[c] -= colMax[c] }
                if log {
                    expInPlace(row, into: expRow, count: inner)
                    for c in 0..<inner { colSum[c] += expRow[c] }
                } else {
                    expInPlace(row, into: row, count: inner)
                    for c in 0..<inner { colSum[c] += row[c] }
                }
            }
            if log {
                for c in 0..<inner { colSum[c] = T.log(colSum[c]) }
                for j in 0..<n {
                    let row = block + j * inner
                    for c in 0..<inner { row[c] -= colSum[c] }
                }
            } else {
                for c in 0..<inner { colSum[c] = 1 / colSum[c] }
                for j in 0..<n {
                    let row = block + j * inner
                    for c in 0..<inner { row[c] *= colSum[c] }
                }
            }
        }
    }
}

/// Softmax or log-softmax of one dense line, in place; `tmp` holds `count` elements.
@inlinable
func softmaxLineInPlace<T: BinaryFloatingPoint & ElementaryMath>(_ q: UnsafeMutablePointer<T>, count n: Int, log: Bool, tmp: UnsafeMutablePointer<T>) {
    var m = -T.infinity
    for i in 0..<n { let v = q[i]; if v > m || v.isNaN { m = v } }
    for i in 0..<n { q[i] -= m }
    if log {
        // (x − m) − log Σ: x − m is exact near the max, so large logits keep their digits.
        var sum: T = 0
        var i = 0
        while i < n {
            let c = Swift.min(n - i, 1024)  // exponentials of a chunk, summed, then dropped
            expInPlace(q + i, into: tmp, count: c)
            for k in 0..<c { sum += tmp[k] }
            i += c
        }
        let logSum = T.log(sum)
        for i in 0..<n { q[i] -= logSum }
    } else {
        expInPlace(q, into: q, count: n)
        var s0: T = 0, s1: T = 0, s2: T = 0, s3: T = 0
        var i = 0
        while i + 4 <= n { s0 += q[i]; s1 += q[i + 1]; s2 += q[i + 2]; s3 += q[i + 3]; i += 4 }
        while i < n { s0 += q[i]; i += 1 }
        let inv = 1 / ((s0 + s1) + (s2 + s3))
        for i in 0..<n { q[i] *= inv }
    }
}

/// dst[i] = exp(src[i]) over a dense run (may alias); Float32 runs vectorised.
@inlinable @inline(__always)
func expInPlace<T: BinaryFloatingPoint & ElementaryMath>(_ src: UnsafeMutablePointer<T>, into dst: UnsafeMutablePointer<T>, count: Int) {
    if T.self == Float.self {
        let s = UnsafeMutableRawPointer(src).assumingMemoryBound(to: Float.self)
        let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
        vectorExp(s, d, count: count)
    } else {
        for i in 0..<count { dst[i] = T.exp(src[i]) }
    }
}

/// The elementary functions kernels need, for Float and Double (libm).
public protocol ElementaryMath {
    static func exp(_ x: Self) -> Self
    static func log(_ x: Self) -> Self
    static func log1p(_ x: Self) -> Self
    static func expm1(_ x: Self) -> Self
    static func sin(_ x: Self) -> Self
    static func cos(_ x: Self) -> Self
    static func tanh(_ x: Self) -> Self
    static func erf(_ x: Self) -> Self
    static func pow(_ x: Self, _ y: Self) -> Self
}

extension Float: ElementaryMath {
    @inlinable public static func exp(_ x: Float) -> Float { expf(x) }
    @inlinable public static func log(_ x: Float) -> Float { logf(x) }
    @inlinable public static func log1p(_ x: Float) -> Float { log1pf(x) }
    @inlinable public static func expm1(_ x: Float) -> Float { expm1f(x) }
    @inlinable public static func sin(_ x: Float) -> Float { sinf(x) }
    @inlinable public static func cos(_ x: Float) -> Float { cosf(x) }
    @inlinable public static func tanh(_ x: Float) -> Float { tanhf(x) }
    @inlinable public static func erf(_ x: Float) -> Float { erff(x) }
    @inlinable public static func pow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
}

extension Double: ElementaryMath {
    @inlinable public static func exp(_ x: Double) -> Double { Glibc.exp(x) }
    @inlinable public static func log(_ x: Double) -> Double { Glibc.log(x) }
    @inlinable public static func log1p(_ x: Double) -> Double { Glibc.log1p(x) }
    @inlinable public static func expm1(_ x: Double) -> Double { Glibc.expm1(x) }
    @inlinable public static func sin(_ x: Double) -> Double { Glibc.sin(x) }
    @inlinable public static func cos(_ x: Double) -> Double { Glibc.cos(x) }
    @inlinable public static func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
    @inlinable public static func erf(_ x: Double) -> Double { Glibc.erf(x) }
    @inlinable public static func pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
}
