/// Fused batch normalisation over a dense [outer, channels, inner] layout (NCHW: outer = N,
/// inner = H·W; [N, C]: inner = 1). Statistics per channel over outer·inner elements, two
/// passes (mean, then squared deviations) with Double accumulators. Channels are split
/// across threads when the work is large enough.
///
/// Forward:  y = (x − μ)·invstd·γ + β,  invstd = 1/√(σ² + eps), σ² biased.
/// Backward (Ioffe & Szegedy 2015, with x̂ = (x − μ)·invstd and M = outer·inner):
///   dβ = Σ dy,  dγ = Σ dy·x̂,  dx = γ·invstd/M · (M·dy − dβ − x̂·dγ).
///
/// The input, output and their gradients are stored as `S` and the parameters and
/// statistics as `T` (both Float32 or Float64, or Float16/BFloat16 storage with Float32
/// statistics: mixed precision without Float32 copies of the activations). Elements are
/// widened to `T` as they are read and rounded to `S` once as they are written.

/// How a batch-norm kernel reads and writes its input/output elements.
public protocol BatchNormStorage {
    /// This value as `T` (exact for the widening conversions the kernels use).
    func widened<T: BinaryFloatingPoint>(to: T.Type) -> T
    /// `v` rounded to this type.
    static func narrowed<T: BinaryFloatingPoint>(_ v: T) -> Self
}

extension Float: BatchNormStorage {
    @inlinable public func widened<T: BinaryFloatingPoint>(to: T.Type) -> T { T(self) }
    @inlinable public static func narrowed<T: BinaryFloatingPoint>(_ v: T) -> Float { Float(v) }
}

extension Double: BatchNormStorage {
    @inlinable public func widened<T: BinaryFloatingPoint>(to: T.Type) -> T { T(self) }
    @inlinable public static func narrowed<T: BinaryFloatingPoint>(_ v: T) -> Double { Double(v) }
}

extension Float16: BatchNormStorage {
    @inlinable public func widened<T: BinaryFloatingPoint>(to: T.Type) -> T { T(Float(self)) }
    @inlinable public static func narrowed<T: BinaryFloatingPoint>(_ v: T) -> Float16 { Float16(Float(v)) }
}

extension BFloat16: BatchNormStorage {
    @inlinable public func widened<T: BinaryFloatingPoint>(to: T.Type) -> T { T(floatValue) }
    @inlinable public static func narrowed<T: BinaryFloatingPoint>(_ v: T) -> BFloat16 { BFloat16(Float(v)) }
}

// The per-channel sums below run eight independent Double accumulators (in a fixed order,
// so results do not depend on threads or load): one accumulator is a chain of dependent
// additions at one element per add latency; eight let the additions overlap and vectorise.

/// Σ p[i] for i in 0..<n, widened to `T` and accumulated in Double.
@inlinable
func batchNormSum<T: BinaryFloatingPoint, S: BatchNormStorage>(_ p: UnsafePointer<S>, _ n: Int, as _: T.Type) -> Double {
    var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0, a5 = 0.0, a6 = 0.0, a7 = 0.0
    var i = 0
    while i &+ 8 <= n {
        a0 += Double(p[i].widened(to: T.self)); a1 += Double(p[i &+ 1].widened(to: T.self))
        a2 += Double(p[i &+ 2].widened(to: T.self)); a3 += Double(p[i &+ 3].widened(to: T.self))
        a4 += Double(p[i &+ 4].widened(to: T.self)); a5 += Double(p[i &+ 5].widened(to: T.self))
        a6 += Double(p[i &+ 6].widened(to: T.self)); a7 += Double(p[i &+ 7].widened(to: T.self))
        i &+= 8
    }
    var tail = 0.0
    while i < n { tail += Double(p[i].widened(to: T.self)); i &+= 1 }
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + tail
}

/// Σ (p[i] − mean)² for i in 0..<n, in Double.
@inlinable
func batchNormSquaredDeviations<T: BinaryFloatingPoint, S: BatchNormStorage>(_ p: UnsafePointer<S>, _ n: Int, mean mu: Double,
                                                                            as _: T.Type) -> Double {
    var a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0, a4 = 0.0, a5 = 0.0, a6 = 0.0, a7 = 0.0
    @inline(__always) func d(_ j: Int) -> Double { let v = Double(p[j].widened(to: T.self)) - mu; return v * v }
    var i = 0
    while i &+ 8 <= n {
        a0 += d(i); a1 += d(i &+ 1); a2 += d(i &+ 2); a3 += d(i &+ 3)
        a4 += d(i &+ 4); a5 += d(i &+ 5); a6 += d(i &+ 6); a7 += d(i &+ 7)
        i &+= 8
    }
    var tail = 0.0
    while i < n { tail += d(i); i &+= 1 }
    return ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + tail
}

/// (Σ g[i], Σ g[i]·(x[i] − mean)) for i in 0..<n, in Double.
@inlinable
func batchNormGradientSums<T: BinaryFloatingPoint, S: BatchNormStorage>(_ g: UnsafePointer<S>, _ x: UnsafePointer<S>, _ n: Int,
                                                                       mean mu: Double, as _: T.Type) -> (Double, Double) {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0
    @inline(__always) func gv(_ j: Int) -> Double { Double(g[j].widened(to: T.self)) }
    @inline(__always) func xv(_ j: Int) -> Double { Double(x[j].widened(to: T.self)) - mu }
    var i = 0
    while i &+ 4 <= n {
        let g0 = gv(i), g1 = gv(i &+ 1), g2 = gv(i &+ 2), g3 = gv(i &+ 3)
        s0 += g0; s1 += g1; s2 += g2; s3 += g3
        t0 += g0 * xv(i); t1 += g1 * xv(i &+ 1); t2 += g2 * xv(i &+ 2); t3 += g3 * xv(i &+ 3)
        i &+= 4
    }
    var sTail = 0.0, tTail = 0.0
    while i < n { let gi = gv(i); sTail += gi; tTail += gi * xv(i); i &+= 1 }
    return (((s0 + s1) + (s2 + s3)) + sTail, ((t0 + t1) + (t2 + t3)) + tTail)
}

@inlinable
public func batchNormForward<T: BinaryFloatingPoint, S: BatchNormStorage>(
    _ x: UnsafePointer<S>, outer: Int, channels: Int, inner: Int,
    gamma: UnsafePointer<T>?, beta: UnsafePointer<T>?, eps: Double,
    _ y: UnsafeMutablePointer<S>, mean: UnsafeMutablePointer<T>, variance: UnsafeMutablePointer<T>
) {
    let m = outer * inner
    if m == 0 || channels == 0 { return }
    let stride = channels * inner
    let xb = UnsafeSendableBox(x), yb = UnsafeSendableBox(y), mb = UnsafeSendableBox(mean), vb = UnsafeSendableBox(variance)
    let gb = UnsafeSendableBox(gamma), bb = UnsafeSendableBox(beta)
    parallelChunks(count: channels, grain: Swift.max(1, KernelThreading.minChunk / Swift.max(m, 1))) { range in
        let x = xb.value, y = yb.value
        for c in range {
            var s = 0.0
            for o in 0..<outer { s += batchNormSum(x + o * stride + c * inner, inner, as: T.self) }
            let mu = s / Double(m)
            var ss = 0.0
            for o in 0..<outer { ss += batchNormSquaredDeviations(x + o * stride + c * inner, inner, mean: mu, as: T.self) }
            let v = ss / Double(m)
            let invstd = 1 / (v + eps).squareRoot()
            let g = gb.value.map { Double($0[c]) } ?? 1
            let b = bb.value.map { Double($0[c]) } ?? 0
            let scale = T(invstd * g), shift = T(b - mu * invstd * g)
            for o in 0..<outer {
                let p = x + o * stride + c * inner, q = y + o * stride + c * inner
                for i in 0..<inner { q[i] = S.narrowed(p[i].widened(to: T.self) * scale + shift) }
            }
            mb.value[c] = T(mu)
            vb.value[c] = T(v)
        }
    }
}

@inlinable
public func batchNormBackward<T: BinaryFloatingPoint, S: BatchNormStorage>(
    _ dy: UnsafePointer<S>, _ x: UnsafePointer<S>, outer: Int, channels: Int, inner: Int,
    gamma: UnsafePointer<T>?, mean: UnsafePointer<T>, variance: UnsafePointer<T>, eps: Double,
    dx: UnsafeMutablePointer<S>, dgamma: UnsafeMutablePointer<T>, dbeta: UnsafeMutablePointer<T>
) {
    let m = outer * inner
    if channels == 0 { return }
    let stride = channels * inner
    let dyb = UnsafeSendableBox(dy), xb = UnsafeSendableBox(x), dxb = UnsafeSendableBox(dx)
    let gb = UnsafeSendableBox(gamma), mb = UnsafeSendableBox(mean), vb = UnsafeSendableBox(variance)
    let dgb = UnsafeSendableBox(dgamma), dbb = UnsafeSendableBox(dbeta)
    parallelChunks(count: channels, grain: Swift.max(1, KernelThreading.minChunk / Swift.max(m, 1))) { range in
        let dy = dyb.value, x = xb.value, dx = dxb.value
        for c in range {
            let mu = Double(mb.value[c])
            let invstd = 1 / (Double(vb.value[c]) + eps).squareRoot()
            var sdy = 0.0, sdyx = 0.0
            for o in 0..<outer {
                let (a, b) = batchNormGradientSums(dy + o * stride + c * inner, x + o * stride + c * inner, inner, mean: mu, as: T.self)
                sdy += a
                sdyx += b
            }
            sdyx *= invstd  // Σ dy·x̂
            dbb.value[c] = T(sdy)
            dgb.value[c] = T(sdyx)
            if m == 0 { continue }
            let g = gb.value.map { Double($0[c]) } ?? 1
            let k = g * invstd / Double(m)
            // dx = k·(M·dy − Σdy − x̂·Σdy·x̂) = a·dy + b·x + c0
            let a = T(k * Double(m))
            let b = T(-k * sdyx * invstd)
            let c0 = T(-k * sdy + k * sdyx * invstd * mu)
            for o in 0..<outer {
                let pg = dy + o * stride + c * inner, px = x + o * stride + c * inner, q = dx + o * stride + c * inner
                for i in 0..<inner { q[i] = S.narrowed(a * pg[i].widened(to: T.self) + b * px[i].widened(to: T.self) + c0) }
            }
        }
    }
}
