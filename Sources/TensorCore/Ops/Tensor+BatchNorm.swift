import TensorKernels

extension Tensor {
    /// Batch normalisation with batch statistics over every dim but 1, fused into one
    /// forward and one backward kernel: y = (x − μ)/√(σ² + eps)·weight + bias.
    ///
    /// Input [N, C, ...]; weight and bias [C] (optional). Returns the output and the
    /// per-channel mean and biased variance [C] (detached; for running statistics).
    /// Differentiable in x, weight and bias (op "batchNorm").
    public func batchNorm(weight: Tensor?, bias: Tensor?, eps: Double) -> (output: Tensor, mean: Tensor, variance: Tensor) {
        precondition(rank >= 2, "batchNorm: expected input [N, C, ...], got \(shapeString(shape))")
        let c = shape[1]
        for (name, t) in [("weight", weight), ("bias", bias)] {
            if let t { precondition(t.shape == [c] && t.dtype == dtype, "batchNorm: \(name) \(shapeString(t.shape)) \(t.dtype) for input \(shapeString(shape)) \(dtype): expected [\(c)] \(dtype)") }
        }
        if dtype.isReducedPrecision {
            let r = to(.float32).batchNorm(weight: weight?.to(.float32), bias: bias?.to(.float32), eps: eps)
            return (r.output.to(dtype), r.mean.to(dtype), r.variance.to(dtype))
        }
        precondition(dtype == .float32 || dtype == .float64, "batchNorm: expected a floating-point input, got \(dtype)")
        let x = contiguous().detached()
        let outer = shape[0], inner = shape.dropFirst(2).reduce(1, *)
        let y = Tensor(uninitializedShape: shape, dtype: dtype)
        let mean = Tensor(uninitializedShape: [c], dtype: dtype), variance = Tensor(uninitializedShape: [c], dtype: dtype)
        let w = weight?.contiguous().detached(), b = bias?.contiguous().detached()
        func run<T: KernelFloat>(_: T.Type) {
            func ptr(_ t: Tensor?) -> UnsafePointer<T>? { t.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: T.self) + $0.offset) } }
            batchNormForward(ptr(x)!, outer: outer, channels: c, inner: inner, gamma: ptr(w), beta: ptr(b), eps: eps,
                             y.storage.pointer.assumingMemoryBound(to: T.self), mean: mean.storage.pointer.assumingMemoryBound(to: T.self),
                             variance: variance.storage.pointer.assumingMemoryBound(to: T.self))
        }
        if dtype == .float32 { run(Float.self) } else { run(Double.self) }
        var inputs = [self]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let hasW = weight != nil, hasB = bias != nil
        let out = y.recording("batchNorm", inputs: inputs) { g in
            let gy = g.contiguous()
            let dx = Tensor(uninitializedShape: x.shape, dtype: x.dtype)
            let dw = Tensor(uninitializedShape: [c], dtype: x.dtype), db = Tensor(uninitializedShape: [c], dtype: x.dtype)
            func back<T: KernelFloat>(_: T.Type) {
                func ptr(_ t: Tensor?) -> UnsafePointer<T>? { t.map { UnsafePointer($0.storage.pointer.assumingMemoryBound(to: T.self) + $0.offset) } }
                batchNormBackward(ptr(gy)!, ptr(x)!, outer: outer, channels: c, inner: inner, gamma: ptr(w), mean: ptr(mean)!,
                                  variance: ptr(variance)!, eps: eps, dx: dx.storage.pointer.assumingMemoryBound(to: T.self),
                                  dgamma: dw.storage.pointer.assumingMemoryBound(to: T.self), dbeta: db.storage.pointer.assumingMemoryBound(to: T.self))
            }
            if x.dtype == .float32 { back(Float.self) } else { back(Double.self) }
            var grads: [Tensor?] = [dx]
            if hasW { grads.append(dw) }
            if hasB { grads.append(db) }
            return grads
        }
        return (out, mean, variance)
    }
}
