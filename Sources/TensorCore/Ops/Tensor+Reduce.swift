import TensorKernels

/// The fold a raw reduction applies.
enum ReduceKind {
    /// Σ x; identity 0.
    case sum
    /// max x, NaN-propagating; identity -inf; an empty reduction is an error.
    case max
    /// min x, NaN-propagating; identity +inf; an empty reduction is an error.
    case min
}

/// Reductions over any set of dimensions: sum, mean, variance, amax, norms, cumsum.
///
/// `dims` may be negative; nil reduces every dimension; `keepDim` keeps reduced dims
/// with extent 1. Float16/BFloat16 accumulate in Float32 and round once at the end.
/// Empty reductions: sum gives 0, mean and variance NaN, max/min trap naming the op.
extension Tensor {
    /// One flag per dim: true where the dim is reduced (all dims when `dims` is nil).
    func reducedFlags(_ dims: [Int]?, op: String) -> [Bool] {
        var flags = [Bool](repeating: dims == nil, count: rank)
        if let dims {
            for d in dims {
                let n = normalizedDim(d, op: op)
                if rank == 0 { continue }
                precondition(!flags[n], "\(op): dimension \(d) appears more than once in dims \(dims)")
                flags[n] = true
            }
        }
        return flags
    }

    static func keptShape(_ shape: [Int], _ flags: [Bool], keepDim: Bool) -> [Int] {
        var out: [Int] = []
        for (i, s) in shape.enumerated() {
            if flags[i] { if keepDim { out.append(1) } } else { out.append(s) }
        }
        return out
    }

    /// Number of elements folded into each output element.
    func reducedCount(_ flags: [Bool]) -> Int {
        var n = 1
        for (i, f) in flags.enumerated() where f { n *= shape[i] }
        return n
    }

    /// This tensor (no history) in the type its arithmetic runs in: Float32 for half
    /// types, Float64 for integers and Bool, itself for Float32/Float64.
    func computeCopy() -> Tensor {
        switch dtype {
        case .float32, .float64: return detached()
        case .float16, .bfloat16: return to(.float32).detached()
        default: return to(.float64).detached()
        }
    }

    /// Traps (naming `op`, the dim and the shape) when a flagged dim has extent 0.
    func checkNonEmpty(_ flags: [Bool], op: String) {
        for (d, f) in flags.enumerated() where f && shape[d] == 0 {
            preconditionFailure("\(op): cannot reduce over the empty dimension \(d) of shape \(shapeString(shape))")
        }
    }

    /// Folds the flagged dims with `kind`, no autograd; other dtypes run through `computeCopy`.
    func reduceRaw(_ flags: [Bool], keepDim: Bool, kind: ReduceKind, op: String) -> Tensor {
        if kind != .sum { checkNonEmpty(flags, op: op) }
        if dtype != .float32 && dtype != .float64 {
            return computeCopy().reduceRaw(flags, keepDim: keepDim, kind: kind, op: op).to(dtype).detached()
        }
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        let identity: Double = kind == .sum ? 0 : (kind == .max ? -.infinity : .infinity)
        var out = Tensor.full(keep, identity, dtype: dtype)
        func run<T: KernelFloat>(_: T.Type) {
            let dst = out.storage.pointer.assumingMemoryBound(to: T.self)
            withStoragePointer(T.self) { p in
                switch kind {
                case .sum: reduceStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags, dst, SumCombiner<T>.self)
                case .max: reduceStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags, dst, MaxCombiner<T>.self)
                case .min: reduceStrided(p, shape: shape, srcStrides: strides, srcOffset: offset, reduced: flags, dst, MinCombiner<T>.self)
                }
            }
        }
        if dtype == .float32 { run(Float.self) } else { run(Double.self) }
        if !keepDim {
            let s = Tensor.keptShape(shape, flags, keepDim: false)
            out = out.view(shape: s, strides: contiguousStrides(s), offset: 0)
        }
        return out
    }

    /// Broadcasts a reduction's gradient back to the input shape (`keep` is the keepdim shape).
    static func expandGradient(_ g: Tensor, keep: [Int], to shape: [Int]) -> Tensor {
        g.reshaped(keep).expand(shape).contiguous()
    }

    /// Sum over `dims` (all dims when nil): Σ x. Integer tensors sum exactly to Int64
    /// below 2^53 in magnitude; the sum of an empty set is 0.
    public func sum(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        let flags = reducedFlags(dims, op: "sum")
        if !dtype.isFloatingPoint {
            return to(.float64).detached().reduceRaw(flags, keepDim: keepDim, kind: .sum, op: "sum").to(.int64).detached()
        }
        let out = reduceRaw(flags, keepDim: keepDim, kind: .sum, op: "sum")
        let src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        return out.recording("sum", inputs: [self]) { g in [Tensor.expandGradient(g, keep: keep, to: src)] }
    }

    /// Sum over one dimension.
    public func sum(dim: Int, keepDim: Bool = false) -> Tensor { sum(dims: [dim], keepDim: keepDim) }

    /// Mean over `dims` (all dims when nil): Σ x / n. The mean of an empty set is NaN.
    public func mean(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        precondition(dtype.isFloatingPoint, "mean: expected a floating-point tensor, got \(dtype)")
        let flags = reducedFlags(dims, op: "mean")
        let n = reducedCount(flags)
        let s = computeCopy().reduceRaw(flags, keepDim: keepDim, kind: .sum, op: "mean")
        let out = (s * (1 / Double(n))).to(dtype).detached()
        let src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        return out.recording("mean", inputs: [self]) { g in [Tensor.expandGradient(g * (1 / Double(n)), keep: keep, to: src)] }
    }

    /// Mean over one dimension.
    public func mean(dim: Int, keepDim: Bool = false) -> Tensor { mean(dims: [dim], keepDim: keepDim) }

    /// Two-pass variance in keepdim layout: (Σ (x − mean)², mean), in the compute dtype.
    func varianceParts(_ flags: [Bool]) -> (m2: Tensor, mean: Tensor) {
        let x = computeCopy()
        let n = reducedCount(flags)
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        var mean = x.reduceRaw(flags, keepDim: true, kind: .sum, op: "var")
        let m2 = Tensor.full(keep, 0, dtype: x.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            let mp = mean.storage.pointer.assumingMemoryBound(to: T.self)
            let inv = 1 / T(n)
            for i in 0..<mean.count { mp[i] *= inv }
            x.withStoragePointer(T.self) { p in
                squaredDeviationSumStrided(p, shape: x.shape, srcStrides: x.strides, srcOffset: x.offset, reduced: flags,
                                           mean: UnsafePointer(mp), m2.storage.pointer.assumingMemoryBound(to: T.self))
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        mean.gradNode = nil
        return (m2, mean)
    }

    /// Variance over `dims` (all when nil): Σ (x − mean)² / max(0, n − correction).
    ///
    /// `correction` 1 is the unbiased (Bessel) estimate, 0 the population variance.
    /// Computed in two passes (mean, then squared deviations), so a large common
    /// offset does not cancel the result away. Empty reductions give NaN.
    public func variance(dims: [Int]? = nil, correction: Int = 1, keepDim: Bool = false) -> Tensor {
        precondition(dtype.isFloatingPoint, "var: expected a floating-point tensor, got \(dtype)")
        precondition(correction >= 0, "var: correction \(correction) must be non-negative")
        let flags = reducedFlags(dims, op: "var")
        let n = reducedCount(flags)
        let denom = Double(Swift.max(0, n - correction))
        let (m2, mean) = varianceParts(flags)
        let outShape = Tensor.keptShape(shape, flags, keepDim: keepDim)
        let out = (m2 / denom).to(dtype).reshaped(outShape).detached()
        let x = detached(), src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        let meanT = mean.to(dtype).detached()
        return out.recording("var", inputs: [self]) { g in
            // d var / dx = 2 (x − mean) / (n − correction)
            [(g.reshaped(keep) * (x - meanT) * (2 / denom)).expand(src).contiguous()]
        }
    }

    /// Standard deviation over `dims`: sqrt(variance(dims, correction)).
    public func std(dims: [Int]? = nil, correction: Int = 1, keepDim: Bool = false) -> Tensor {
        variance(dims: dims, correction: correction, keepDim: keepDim).sqrt()
    }

    /// Maximum over `dims` (all when nil), NaN-propagating.
    ///
    /// The gradient is split evenly among the elements equal to the maximum (as
    /// PyTorch's amax). Reducing over an empty dimension is a precondition failure.
    public func amax(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        let flags = reducedFlags(dims, op: "amax")
        let out = reduceRaw(flags, keepDim: keepDim, kind: .max, op: "amax")
        let x = detached(), src = shape
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        let outKeep = out.reshaped(keep).detached()
        return out.recording("amax", inputs: [self]) { g in
            let mask = x.eq(outKeep).to(x.dtype)
            let ties = mask.sum(dims: dims, keepDim: true)
            return [g.reshaped(keep) * mask / ties]
        }
    }

    /// Minimum over `dims` (all when nil), NaN-propagating: −amax(−x).
    public func amin(dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        checkNonEmpty(reducedFlags(dims, op: "amin"), op: "amin")
        return -((-self).amax(dims: dims, keepDim: keepDim))
    }

    /// Vector p-norm over `dims` (all when nil): (Σ |x|^p)^(1/p).
    ///
    /// p = 2 (Euclidean), 1 (Σ|x|), .infinity (max |x|), -.infinity (min |x|), 0 (number of
    /// non-zeros, not differentiable) or any other p. The gradient at a zero norm is 0
    /// (a subgradient) instead of NaN; for p = ±inf it is split among tied elements.
    public func norm(p: Double = 2, dims: [Int]? = nil, keepDim: Bool = false) -> Tensor {
        precondition(dtype.isFloatingPoint, "norm: expected a floating-point tensor, got \(dtype)")
        precondition(!p.isNaN, "norm: p must not be NaN")
        let flags = reducedFlags(dims, op: "norm")
        let x = computeCopy()
        let a = x.abs()
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        let nk: Tensor   // the norm in keepdim layout, compute dtype
        if p == 2 {
            nk = (x * x).reduceRaw(flags, keepDim: true, kind: .sum, op: "norm").sqrt()
        } else if p == 1 {
            nk = a.reduceRaw(flags, keepDim: true, kind: .sum, op: "norm")
        } else if p == .infinity {
            nk = a.reduceRaw(flags, keepDim: true, kind: .max, op: "norm")
        } else if p == -.infinity {
            nk = a.reduceRaw(flags, keepDim: true, kind: .min, op: "norm")
        } else if p == 0 {
            nk = a.ne(0).to(x.dtype).reduceRaw(flags, keepDim: true, kind: .sum, op: "norm")
        } else {
            nk = a.pow(p).reduceRaw(flags, keepDim: true, kind: .sum, op: "norm").pow(1 / p)
        }
        let out = nk.reshaped(Tensor.keptShape(shape, flags, keepDim: keepDim)).to(dtype).detached()
        if p == 0 { return out }
        let xd = detached(), nKeep = nk.to(dtype).detached(), src = shape
        return out.recording("norm", inputs: [self]) { g in
            let gk = g.reshaped(keep)
            let zero = xd.zerosLike()
            let local: Tensor
            if p == 2 {
                local = Tensor.where(nKeep.eq(0).expand(src), zero, xd / nKeep)
            } else if p == 1 {
                local = xd.sign()
            } else if p.isInfinite {
                let mask = xd.abs().eq(nKeep).to(xd.dtype)
                local = xd.sign() * mask / mask.sum(dims: dims, keepDim: true)
            } else {
                // d/dx (Σ|x|^p)^(1/p) = sign(x) |x|^(p−1) / ‖x‖^(p−1)
                let ratio = Tensor.where(nKeep.eq(0).expand(src), zero, xd.abs() / nKeep)
                local = xd.sign() * ratio.pow(p - 1)
            }
            return [(gk * local).expand(src).contiguous()]
        }
    }

    // MARK: - Scans

    /// Inclusive cumulative sum along `dim`, like `torch.cumsum`; the gradient is the
    /// reversed cumulative sum of the output gradient. Integer and Bool inputs give Int64.
    public func cumsum(dim: Int) -> Tensor {
        if rank == 0 { return reshaped([1]).cumsum(dim: 0).reshaped([]) }
        let d = normalizedDim(dim, op: "cumsum")
        if !dtype.isFloatingPoint {
            let x = dtype == .int64 ? detached() : to(.int64).detached()
            let out = Tensor(uninitializedShape: shape, dtype: .int64)
            x.withStoragePointer(Int64.self) { p in
                cumsumAlongDim(p, shape: shape, strides: x.strides, offset: x.offset, dim: d,
                               out.storage.pointer.assumingMemoryBound(to: Int64.self))
            }
            return out
        }
        let out = cumsumRaw(dim: d, reverse: false)
        return out.recording("cumsum", inputs: [self]) { g in [g.reverseCumsum(dim: d)] }
    }

    /// Σ_{i ≥ j} along `dim` (the gradient of cumsum); its own gradient is a forward cumsum.
    func reverseCumsum(dim d: Int) -> Tensor {
        let out = cumsumRaw(dim: d, reverse: true)
        return out.recording("cumsum", inputs: [self]) { g in [g.cumsum(dim: d)] }
    }

    /// Cumulative sum of a floating-point tensor along a normalised dim, no autograd.
    func cumsumRaw(dim d: Int, reverse: Bool) -> Tensor {
        let x = computeCopy()
        let out = Tensor(uninitializedShape: shape, dtype: x.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            x.withStoragePointer(T.self) { p in
                cumsumAlongDim(p, shape: shape, strides: x.strides, offset: x.offset, dim: d,
                               out.storage.pointer.assumingMemoryBound(to: T.self), reverse: reverse)
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out.to(dtype).detached()
    }
}
