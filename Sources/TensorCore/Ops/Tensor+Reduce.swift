import TensorKernels

/// Reductions over any set of dimensions.
extension Tensor {
    func reducedFlags(_ dims: [Int]?, op: String) -> [Bool] {
        var flags = [Bool](repeating: dims == nil, count: rank)
        if let dims { for d in dims { flags[normalizedDim(d, op: op)] = true } }
        return flags
    }

    static func keptShape(_ shape: [Int], _ flags: [Bool], keepDim: Bool) -> [Int] {
        var out: [Int] = []
        for (i, s) in shape.enumerated() {
            if flags[i] { if keepDim { out.append(1) } } else { out.append(s) }
        }
        return out
    }

    /// Folds with `combine` from `identity`, no autograd; half types reduce in Float32.
    func reduceRaw(_ flags: [Bool], keepDim: Bool, identity: Double, op: String,
                   _ f32: @escaping (Float, Float) -> Float, _ f64: @escaping (Double, Double) -> Double) -> Tensor {
        if dtype.isReducedPrecision {
            return to(.float32).detached().reduceRaw(flags, keepDim: keepDim, identity: identity, op: op, f32, f64).to(dtype).detached()
        }
        precondition(dtype == .float32 || dtype == .float64, "\(op): expected a floating-point tensor, got \(dtype)")
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        var out = Tensor.full(keep, identity, dtype: dtype)
        if dtype == .float32 {
            withStoragePointer(Float.self) { p in
                reduceStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags,
                              out.storage.pointer.assumingMemoryBound(to: Float.self), identity: Float(identity), f32)
            }
        } else {
            withStoragePointer(Double.self) { p in
                reduceStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags,
                              out.storage.pointer.assumingMemoryBound(to: Double.self), identity: identity, f64)
            }
        }
        if !keepDim { out = out.view(shape: Tensor.keptShape(shape, flags, keepDim: false),
                                     strides: contiguousStrides(Tensor.keptShape(shape, flags, keepDim: false)), offset: 0) }
        return out
    }

    /// Sum over `dims` (all dims when nil).
    public func sum(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        let flags = reducedFlags(dims, op: "sum")
        let out: Tensor
        if !dtype.isFloatingPoint {
            out = to(.float64).detached().sum(dims: dims, keepDim: keepDim).to(.int64).detached()
            return out
        }
        out = reduceRaw(flags, keepDim: keepDim, identity: 0, op: "sum", { $0 + $1 }, { $0 + $1 })
        let src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        return out.recording("sum", inputs: [self]) { g in [g.reshaped(keep).expand(src).contiguous()] }
    }

    /// Sum over one dimension.
    public func sum(dim: Int, keepDim: Bool = false) -> Tensor { sum(dims: [dim], keepDim: keepDim) }

    /// Mean over `dims` (all dims when nil).
    public func mean(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        let flags = reducedFlags(dims, op: "mean")
        var n = 1
        for (i, f) in flags.enumerated() where f { n *= shape[i] }
        let s = sum(dims: dims, keepDim: keepDim)
        let out = (s.detached() * (1 / Double(n))).detached()
        let src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        return out.recording("mean", inputs: [self]) { g in [(g.reshaped(keep) * (1 / Double(n))).expand(src).contiguous()] }
    }

    /// Mean over one dimension.
    public func mean(dim: Int, keepDim: Bool = false) -> Tensor { mean(dims: [dim], keepDim: keepDim) }
}
