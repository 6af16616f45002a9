#if canImport(Glibc)
import Glibc
#endif

/// Numerically stable softmax / log-softmax along one dimension.
///
/// Each line is shifted by its maximum before `exp`, so large logits do not overflow;
/// a line holding +inf gives NaN (as IEEE arithmetic says), a line of -inf gives NaN.
/// The destination is dense row-major with the source's shape.
@inlinable
public func softmaxAlongDim<T: BinaryFloatingPoint & ElementaryMath>(
    _ src: UnsafePointer<T>, shape: [Int], strides: [Int], offset: Int, dim: Int,
    _ dst: UnsafeMutablePointer<T>, log: Bool
) {
    let n = shape[dim]
    if n == 0 || elementCount(shape) == 0 { return }
    let st = strides[dim]
    let dstStrides = contiguousStrides(shape)
    let dst_st = dstStrides[dim]
    // Dense destination: offset of a line = sum over outer index * dst strides.
    var outerDstStrides = dstStrides
    outerDstStrides.remove(at: dim)
    var outerShape = shape
    outerShape.remove(at: dim)
    let outerContig = contiguousStrides(outerShape)
    forEachLine(shape: shape, strides: strides, offset: offset, dim: dim) { off, line in
        // Map the dense line index back to a destination offset.
        var rem = line
        var dOff = 0
        for k in 0..<outerShape.count {
            let idx = outerContig[k] == 0 ? 0 : rem / outerContig[k]
            rem -= idx * outerContig[k]
            dOff += idx * outerDstStrides[k]
        }
        let p = src + off
        let q = dst + dOff
        var m = -T.infinity
        for i in 0..<n { let v = p[i * st]; if v > m || v.isNaN { m = v } }
        var sum: T = 0
        if log {
            for i in 0..<n { sum += T.exp(p[i * st] - m) }
            let lse = m + T.log(sum)
            for i in 0..<n { q[i * dst_st] = p[i * st] - lse }
        } else {
            for i in 0..<n {
                let e = T.exp(p[i * st] - m)
                q[i * dst_st] = e
                sum += e
            }
            let inv = 1 / sum
            for i in 0..<n { q[i * dst_st] *= inv }
        }
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
