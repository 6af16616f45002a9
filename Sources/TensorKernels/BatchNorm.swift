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
            for o in 0..<outer {
                let p = x + o * stride + c * inner
                var rs = 0.0
                for i in 0..<inner { rs += Double(p[i].widened(to: T.self)) }
                s += rs
            }
            let mu = s / Double(m)
            var ss = 0.0
            for o in 0..<outer {
                let p = x + o * stride + c * inner
                var rs = 0.0
                for i in 0..<inner { let d = Double(p[i].widened(to: T.self)) - mu; rs += d * d }
                ss += rs
            }
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
                let pg = dy + o * stride + c * inner, px = x + o * stride + c * inner
                var a = 0.0, b = 0.0
                for i in 0..<inner {
                    let g = Double(pg[i].widened(to: T.self))
                    a += g
                    b += g * (Double(px[i].widened(to: T.self)) - mu)
                }
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
