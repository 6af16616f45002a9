import TensorKernels

/// Elementwise unary functions on floating-point tensors.
public enum UnaryOp: String, Sendable, CaseIterable {
    case neg, abs, sign, exp, log, sqrt, rsqrt, sin, cos, tanh, sigmoid, relu, gelu
}

@inlinable
func unaryFloatKernel<T: KernelFloat>(_ op: UnaryOp, _ x: Tensor, _ dst: UnsafeMutablePointer<T>) {
    x.withStoragePointer(T.self) { p in
        let s = x.shape, st = x.strides, o = x.offset
        // Float32 contiguous fast paths: SIMD polynomials instead of scalar libm calls.
        if T.self == Float.self && x.isContiguous && (op == .exp || op == .tanh || op == .sigmoid) {
            let src = UnsafeRawPointer(p + o).assumingMemoryBound(to: Float.self)
            let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: Float.self)
            let boxS = UnsafeSendableBox(src), boxD = UnsafeSendableBox(d)
            parallelChunks(count: x.count, grain: KernelThreading.minChunk) { r in
                switch op {
                case .exp: vectorExp(boxS.value + r.lowerBound, boxD.value + r.lowerBound, count: r.count)
                case .tanh: vectorTanh(boxS.value + r.lowerBound, boxD.value + r.lowerBound, count: r.count)
                default: vectorSigmoid(boxS.value + r.lowerBound, boxD.value + r.lowerBound, count: r.count)
                }
            }
            return
        }
        // Every op runs on Loom's workers (slices of the leading coalesced dim), the op written
        // as a literal closure inside the slice body so it inlines into each slice's loop (see
        // forEachParallelSlice). Cheap ops split from 2 · minChunk elements, libm ones earlier.
        let heavy = op != .neg && op != .abs && op != .sign && op != .sqrt && op != .rsqrt && op != .relu
        forEachParallelSlice(shape: s, strides: [st, contiguousStrides(s)], offsets: [o, 0],
                             minElements: heavy ? KernelThreading.minChunk / 8 : KernelThreading.minChunk) { sh, sts, offs in
            let d = dst + offs[1], ss = sts[0], so = offs[0]
            switch op {
            case .neg: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { -$0 }
            case .abs: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { Swift.abs($0) }
            case .sign: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { $0 > 0 ? 1 : ($0 < 0 ? -1 : $0) }
            case .exp: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { T.exp($0) }
            case .log: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { T.log($0) }
            case .sqrt: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { $0.squareRoot() }
            case .rsqrt: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { 1 / $0.squareRoot() }
            case .sin: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { T.sin($0) }
            case .cos: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { T.cos($0) }
            case .tanh: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { T.tanh($0) }
            case .sigmoid: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { v in
                v >= 0 ? 1 / (1 + T.exp(-v)) : T.exp(v) / (1 + T.exp(v)) }
            // NaN stays NaN: `v > 0 ? v : 0` would map NaN to 0.
            case .relu: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { v in v < 0 ? 0 : v }
            case .gelu: mapStrided(p, shape: sh, srcStrides: ss, srcOffset: so, d) { v in
                v * 0.5 * (1 + T.erf(v * T(0.70710678118654752440))) }
            }
        }
    }
}

extension Tensor {
    /// `op(x)` elementwise, no autograd. Half types compute in Float32.
    static func unaryRaw(_ op: UnaryOp, _ x: Tensor) -> Tensor {
        precondition(x.dtype.isFloatingPoint || op == .neg || op == .abs,
                     "\(op.rawValue): expected a floating-point tensor, got \(x.dtype)")
        if x.dtype.isReducedPrecision { return unaryRaw(op, x.to(.float32).detached()).to(x.dtype).detached() }
        let out = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
        let p = out.storage.pointer
        switch x.dtype {
        case .float32: unaryFloatKernel(op, x, p.assumingMemoryBound(to: Float.self))
        case .float64: unaryFloatKernel(op, x, p.assumingMemoryBound(to: Double.self))
        default:
            // Integer neg/abs through Float64 (exact for values below 2^53).
            return unaryRaw(op, x.to(.float64).detached()).to(x.dtype).detached()
        }
        return out
    }

    /// `op(self)` recorded for autograd.
    public func unary(_ op: UnaryOp) -> Tensor {
        let out = Tensor.unaryRaw(op, self)
        let x = detached()
        let y = out.detached()
        let name = op.rawValue
        switch op {
        case .neg: return out.recording(name, inputs: [self]) { g in [-g] }
        case .abs: return out.recording(name, inputs: [self]) { g in [g * x.unary(.sign)] }
        case .sign: return out
        case .exp: return out.recording(name, inputs: [self]) { g in [g * y] }
        case .log: return out.recording(name, inputs: [self]) { g in [g / x] }
        case .sqrt: return out.recording(name, inputs: [self]) { g in [g / (y * 2)] }
        case .rsqrt: return out.recording(name, inputs: [self]) { g in [g * y * y * y * -0.5] }
        case .sin: return out.recording(name, inputs: [self]) { g in [g * x.unary(.cos)] }
        case .cos: return out.recording(name, inputs: [self]) { g in [-(g * x.unary(.sin))] }
        case .tanh: return out.recording(name, inputs: [self]) { g in [g * (1 - y * y)] }
        case .sigmoid: return out.recording(name, inputs: [self]) { g in [g * y * (1 - y)] }
        case .relu: return out.recording(name, inputs: [self]) { g in [Tensor.reluBackward(g, x)] }
        case .gelu:
            return out.recording(name, inputs: [self]) { g in
                // d/dx x·Φ(x) = Φ(x) + x·φ(x)
                let cdf = ((x * 0.70710678118654752440).erfRaw() + 1) * 0.5
                let pdf = (x * x * -0.5).unary(.exp) * 0.39894228040143267794
                return [g * (cdf + x * pdf)]
            }
        }
    }

    /// g where x > 0, else 0, in one pass (the ReLU derivative; PyTorch's convention at 0 and NaN).
    static func reluBackward(_ g: Tensor, _ x: Tensor) -> Tensor {
        precondition(g.shape == x.shape && g.dtype == x.dtype, "relu backward: gradient \(shapeString(g.shape)) \(g.dtype) vs input \(shapeString(x.shape)) \(x.dtype)")
        guard g.dtype == .float32 || g.dtype == .float64 else {
            return Tensor.where(x.gt(0), g, g.zerosLike())
        }
        let out = Tensor(uninitializedShape: g.shape, dtype: g.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            g.withStoragePointer(T.self) { pg in
                x.withStoragePointer(T.self) { px in
                    zipStrided(pg, aStrides: g.strides, aOffset: g.offset, px, bStrides: x.strides, bOffset: x.offset,
                               shape: g.shape, out.storage.pointer.assumingMemoryBound(to: T.self)) { gv, xv in xv > 0 ? gv : 0 }
                }
            }
        }
        if g.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out
    }

    /// erf elementwise (no autograd; used by gelu's derivative).
    func erfRaw() -> Tensor {
        precondition(dtype == .float32 || dtype == .float64, "erf: expected float32 or float64, got \(dtype)")
        let out = Tensor(uninitializedShape: shape, dtype: dtype)
        func run<T: KernelFloat>(_: T.Type) {
            withStoragePointer(T.self) { p in
                mapStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, out.storage.pointer.assumingMemoryBound(to: T.self)) { T.erf($0) }
            }
        }
        if dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out
    }

    public static prefix func - (x: Tensor) -> Tensor { x.unary(.neg) }
    public func abs() -> Tensor { unary(.abs) }
    public func sign() -> Tensor { unary(.sign) }
    public func exp() -> Tensor { unary(.exp) }
    public func log() -> Tensor { unary(.log) }
    public func sqrt() -> Tensor { unary(.sqrt) }
    public func rsqrt() -> Tensor { unary(.rsqrt) }
    public func sin() -> Tensor { unary(.sin) }
    public func cos() -> Tensor { unary(.cos) }
    public func tanh() -> Tensor { unary(.tanh) }
    public func sigmoid() -> Tensor { unary(.sigmoid) }
    public func relu() -> Tensor { unary(.relu) }
    /// Gaussian error linear unit, exact form x·Φ(x).
    public func gelu() -> Tensor { unary(.gelu) }

    /// x for x > 0, slope·x otherwise.
    public func leakyRelu(_ slope: Double = 0.01) -> Tensor {
        let x = detached()
        let pos = x.gt(0)
        let out = Tensor.where(pos, x, x * slope).detached()
        return out.recording("leakyRelu", inputs: [self]) { g in [Tensor.where(pos, g, g * slope)] }
    }

    /// x for x > 0, alpha·(exp(x) − 1) otherwise.
    public func elu(_ alpha: Double = 1) -> Tensor {
        let x = detached()
        let pos = x.gt(0)
        let e = Tensor.unaryRaw(.exp, x)
        let out = Tensor.where(pos, x, (e - 1) * alpha).detached()
        return out.recording("elu", inputs: [self]) { g in [Tensor.where(pos, g, g * e * alpha)] }
    }

    /// Clamps into [min, max] (either bound optional). NaN stays NaN. Gradient passes
    /// where the input is inside the bounds (inclusive, as PyTorch).
    public func clamp(min lo: Double? = nil, max hi: Double? = nil) -> Tensor {
        precondition(lo != nil || hi != nil, "clamp: give at least one of min and max")
        if let lo, let hi { precondition(lo <= hi, "clamp: min \(lo) > max \(hi)") }
        let x = detached()
        var out = x
        var inside = Tensor.full(shape, 1, dtype: .bool)
        if let lo {
            let below = x.lt(lo)
            out = Tensor.where(below, x.scalarLike(lo), out)
            inside = Tensor.where(below, inside.zerosLike(), inside)
        }
        if let hi {
            let above = x.gt(hi)
            out = Tensor.where(above, x.scalarLike(hi), out)
            inside = Tensor.where(above, inside.zerosLike(), inside)
        }
        if out.storage === storage { out = out.contiguousCopy() }
        let mask = inside
        return out.detached().recording("clamp", inputs: [self]) { g in [Tensor.where(mask, g, g.zerosLike())] }
    }
}
