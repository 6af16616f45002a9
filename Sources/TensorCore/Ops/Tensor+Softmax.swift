import TensorKernels

/// Softmax, log-softmax and log-sum-exp: the numerically stable exponential reductions.
extension Tensor {
    /// Softmax or log-softmax along a normalised dim, no autograd (halves compute in Float32).
    func softmaxRaw(dim d: Int, log: Bool) -> Tensor {
        let x = computeCopy()
        let out = Tensor(uninitializedShape: shape, dtype: x.dtype)
        func run<T: KernelFloat>(_: T.Type) {
            x.withStoragePointer(T.self) { p in
                softmaxAlongDim(p, shape: x.shape, strides: x.strides, offset: x.offset, dim: d,
                                out.storage.pointer.assumingMemoryBound(to: T.self), log: log)
            }
        }
        if x.dtype == .float32 { run(Float.self) } else { run(Double.self) }
        return out.to(dtype).detached()
    }

    /// Softmax along `dim`: exp(xᵢ − m) / Σⱼ exp(xⱼ − m), m the maximum along `dim`.
    ///
    /// Stable for large logits (softmax([1000, 1001]) is finite). A line of -inf gives NaN
    /// as in PyTorch. Gradient: y ⊙ (g − Σ g ⊙ y).
    public func softmax(dim: Int) -> Tensor {
        precondition(dtype.isFloatingPoint, "softmax: expected a floating-point tensor, got \(dtype)")
        if rank == 0 { return reshaped([1]).softmax(dim: 0).reshaped([]) }
        let d = normalizedDim(dim, op: "softmax")
        let out = softmaxRaw(dim: d, log: false)
        let y = out.detached()
        return out.recording("softmax", inputs: [self]) { g in
            [y * (g - (g * y).sum(dims: [d], keepDim: true))]
        }
    }

    /// Log-softmax along `dim`: xᵢ − m − log Σⱼ exp(xⱼ − m).
    ///
    /// More accurate than `softmax(dim:).log()` for very negative outputs.
    /// Gradient: g − softmax ⊙ Σ g.
    public func logSoftmax(dim: Int) -> Tensor {
        precondition(dtype.isFloatingPoint, "logSoftmax: expected a floating-point tensor, got \(dtype)")
        if rank == 0 { return reshaped([1]).logSoftmax(dim: 0).reshaped([]) }
        let d = normalizedDim(dim, op: "logSoftmax")
        let out = softmaxRaw(dim: d, log: true)
        let y = out.detached()
        return out.recording("logSoftmax", inputs: [self]) { g in
            [g - y.exp() * g.sum(dims: [d], keepDim: true)]
        }
    }

    /// log Σ exp(x) over `dims`, computed as m + log Σ exp(x − m) with m the maximum.
    ///
    /// Stable for large inputs; a line of -inf (or an empty reduction) gives -inf, a line
    /// holding +inf gives +inf, NaN propagates. Gradient: g ⊙ exp(x − logsumexp).
    public func logsumexp(dims: [Int], keepDim: Bool = false) -> Tensor {
        precondition(dtype.isFloatingPoint, "logsumexp: expected a floating-point tensor, got \(dtype)")
        let flags = reducedFlags(dims, op: "logsumexp")
        let keep = Tensor.keptShape(shape, flags, keepDim: true)
        let x = computeCopy()
        let lse: Tensor
        if reducedCount(flags) == 0 {
            lse = Tensor.full(keep, -.infinity, dtype: x.dtype)
        } else {
            let m = x.reduceRaw(flags, keepDim: true, kind: .max, op: "logsumexp")
            // Shift by the max where it is finite (an all -inf or +inf line is not shifted).
            let shift = Tensor.where(m.abs().lt(.infinity), m, m.zerosLike())
            lse = (x - shift).exp().reduceRaw(flags, keepDim: true, kind: .sum, op: "logsumexp").log() + shift
        }
        let out = lse.reshaped(Tensor.keptShape(shape, flags, keepDim: keepDim)).to(dtype).detached()
        let xd = detached(), lseKeep = lse.to(dtype).detached()
        return out.recording("logsumexp", inputs: [self]) { g in
            [g.reshaped(keep) * (xd - lseKeep).exp()]
        }
    }

    /// log Σ exp(x) over one dimension.
    public func logsumexp(dim: Int, keepDim: Bool = false) -> Tensor { logsumexp(dims: [dim], keepDim: keepDim) }
}
