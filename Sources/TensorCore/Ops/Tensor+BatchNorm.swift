import TensorKernels

extension Tensor {
    /// Batch normalisation with batch statistics over every dim but 1, fused into one
    /// forward and one backward kernel: y = (x − μ)/√(σ² + eps)·weight + bias.
    ///
    /// Input [N, C, ...]; weight and bias [C] (optional). Returns the output and the
    /// per-channel mean and biased variance [C] (detached; for running statistics).
    /// Differentiable in x, weight and bias (op "batchNorm").
    ///
    /// Mixed precision: a Float16/BFloat16 input with a Float32 weight (and bias) computes
    /// in one kernel without Float32 copies of the activations: elements are widened as
    /// they are read, statistics accumulate in Float64, the output and the input gradient
    /// are rounded to the input's type once, and the mean, variance and weight/bias
    /// gradients are Float32. Only the half input is saved for backward.
    public func batchNorm(weight: Tensor?, bias: Tensor?, eps: Double) -> (output: Tensor, mean: Tensor, variance: Tensor) {
        precondition(rank >= 2, "batchNorm: expected input [N, C, ...], got \(shapeString(shape))")
        let c = shape[1]
        let mixed = dtype.isReducedPrecision && (weight ?? bias)?.dtype == .float32
        let paramType: DType = mixed ? .float32 : dtype
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if let t { precondition(t.shape == [c] && t.dtype == paramType, "batchNorm: \(name) \(shapeString(t.shape)) \(t.dtype) for input \(shapeString(shape)) \(dtype): expected [\(c)] \(paramType)") }
        }
        if dtype.isReducedPrecision && !mixed {
            let r = to(.float32).batchNorm(weight: weight?.to(.float32), bias: bias?.to(.float32), eps: eps)
            return (r.output.to(dtype), r.mean.to(dtype), r.variance.to(dtype))
        }
        precondition(dtype == .float32 || dtype == .float64 || mixed, "batchNorm: expected a floating-point input, got \(dtype)")
        let x = contiguous().detached()
        let outer = shape[0], inner = shape.dropFirst(2).reduce(1, *)
        let y = Tensor(uninitializedShape: shape, dtype: dtype)
        let mean = Tensor(uninitializedShape: [c], dtype: paramType), variance = Tensor(uninitializedShape: [c], dtype: paramType)
        let w = weight?.contiguous().detached(), b = bias?.contiguous().detached()
        func run<T: KernelFloat, S: BatchNormStorage>(_: T.Type, _: S.Type) {
            func ptr<E>(_ t: Tensor?, _: E.Type) -> UnsafePointer<E>? { t.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: E.self) + $0.offset) } }
            batchNormForward(ptr(x, S.self)!, outer: outer, channels: c, inner: inner, gamma: ptr(w, T.self), beta: ptr(b, T.self), eps: eps,
                             y.storage.pointer.assumingMemoryBound(to: S.self), mean: mean.storage.pointer.assumingMemoryBound(to: T.self),
                             variance: variance.storage.pointer.assumingMemoryBound(to: T.self))
        }
        switch dtype {
        case .float32: run(Float.self, Float.self)
        case .float64: run(Double.self, Double.self)
        case .float16: run(Float.self, Float16.self)
        default: run(Float.self, BFloat16.self)
        }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let hasW = weight != nil, hasB = bias != nil
        let out = y.recording("batchNorm", inputs: inputs) { g in
            let gy = (g.dtype == x.dtype ? g : g.to(x.dtype)).contiguous()
            let dx = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
            let dw = Tensor(uninitializedShape: [c], dtype: paramType), db = Tensor(uninitializedShape: [c], dtype: paramType)
            func back<T: KernelFloat, S: BatchNormStorage>(_: T.Type, _: S.Type) {
                func ptr<E>(_ t: Tensor?, _: E.Type) -> UnsafePointer<E>? { t.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: E.self) + $0.offset) } }
                batchNormBackward(ptr(gy, S.self)!, ptr(x, S.self)!, outer: outer, channels: c, inner: inner, gamma: ptr(w, T.self),
                                  mean: ptr(mean, T.self)!, variance: ptr(variance, T.self)!, eps: eps,
                                  dx: dx.storage.pointer.assumingMemoryBound(to: S.self),
                                  dgamma: dw.storage.pointer.assumingMemoryBound(to: T.self), dbeta: db.storage.pointer.assumingMemoryBound(to: T.self))
            }
            switch x.dtype {
            case .float32: back(Float.self, Float.self)
            case .float64: back(Double.self, Double.self)
            case .float16: back(Float.self, Float16.self)
            default: back(Float.self, BFloat16.self)
            }
            var grads: [Tensor?] = [dx]
            if hasW { grads.append(dw) }
            if hasB { grads.append(db) }
            return grads
        }
        return (out, mean, variance)
    }
}
