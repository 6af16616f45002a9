import TensorKernels

/// Creation ops: constant fills, ranges, identity and random tensors.
extension Tensor {
    /// A tensor of `shape` filled with `value` (converted to `dtype`).
    public static func full(_ shape: [Int], _ value: Double, dtype: DType = .float32) -> Tensor {
        var t = Tensor(uninitializedShape: shape, dtype: dtype)
        t.fillUnchecked(value)
        return t
    }

    /// Zeros of `shape`.
    public static func zeros(_ shape: [Int], dtype: DType = .float32) -> Tensor { full(shape, 0, dtype: dtype) }
    /// Ones of `shape`.
    public static func ones(_ shape: [Int], dtype: DType = .float32) -> Tensor { full(shape, 1, dtype: dtype) }
    /// Zeros with this tensor's shape and dtype.
    public func zerosLike() -> Tensor { .zeros(shape, dtype: dtype) }
    /// Ones with this tensor's shape and dtype.
    public func onesLike() -> Tensor { .ones(shape, dtype: dtype) }

    /// Writes `value` into every element of this dense, uniquely owned tensor.
    mutating func fillUnchecked(_ value: Double) {
        let n = count
        let p = storage.pointer
        switch dtype {
        case .float32: p.assumingMemoryBound(to: Float.self).initialize(repeating: Float(value), count: n)
        case .float64: p.assumingMemoryBound(to: Double.self).initialize(repeating: value, count: n)
        case .float16: p.assumingMemoryBound(to: Float16.self).initialize(repeating: Float16(loomDouble: value), count: n)
        case .bfloat16: p.assumingMemoryBound(to: BFloat16.self).initialize(repeating: BFloat16(loomDouble: value), count: n)
        case .int32: p.assumingMemoryBound(to: Int32.self).initialize(repeating: Int32(loomDouble: value), count: n)
        case .int64: p.assumingMemoryBound(to: Int64.self).initialize(repeating: Int64(loomDouble: value), count: n)
        case .uint8: p.assumingMemoryBound(to: UInt8.self).initialize(repeating: UInt8(loomDouble: value), count: n)
        case .bool: p.assumingMemoryBound(to: Bool.self).initialize(repeating: value != 0, count: n)
        }
    }

    /// Builds a dense tensor from per-element Double values (creation helper).
    static func fromDoubles(_ values: [Double], shape: [Int], dtype: DType) -> Tensor {
        var t = Tensor(uninitializedShape: shape, dtype: dtype)
        dispatchAnyType(dtype) { (ty: any TensorElement.Type) in
            func write<T: TensorElement>(_: T.Type) {
                let p = t.storage.pointer.assumingMemoryBound(to: T.self)
                for i in 0..<values.count { p[i] = T(loomDouble: values[i]) }
            }
            write(ty)
        }
        t.gradNode = nil
        return t
    }

    /// Values `start, start + step, ...` below `end` (exclusive), like `torch.arange`.
    public static func arange(_ start: Double = 0, _ end: Double, step: Double = 1, dtype: DType = .float32) throws(TensorError) -> Tensor {
        guard step != 0, step.isFinite, start.isFinite, end.isFinite else {
            throw .argument("arange", "start \(start), end \(end), step \(step): expected finite values and a non-zero step")
        }
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return fromDoubles((0..<n).map { start + Double($0) * step }, shape: [n], dtype: dtype)
    }

    /// Values `0, 1, ...` below `end`, like `torch.arange(end)` (the default `start` above
    /// cannot be used positionally, so this overload provides the one-argument form).
    public static func arange(_ end: Double, dtype: DType = .float32) throws(TensorError) -> Tensor {
        try arange(0, end, step: 1, dtype: dtype)
    }

    /// `steps` evenly spaced values from `start` to `end` inclusive, like `torch.linspace`.
    public static func linspace(_ start: Double, _ end: Double, steps: Int, dtype: DType = .float32) throws(TensorError) -> Tensor {
        guard steps >= 0 else { throw .argument("linspace", "steps \(steps): expected a non-negative count") }
        if steps == 1 { return fromDoubles([start], shape: [1], dtype: dtype) }
        let step = (end - start) / Double(Swift.max(steps - 1, 1))
        // Symmetric evaluation (as PyTorch does) so both ends are exact.
        let values = (0..<steps).map { i -> Double in
            i < steps / 2 ? start + Double(i) * step : end - Double(steps - 1 - i) * step
        }
        return fromDoubles(values, shape: [steps], dtype: dtype)
    }

    /// An n x m matrix with ones on the diagonal.
    public static func eye(_ n: Int, _ m: Int? = nil, dtype: DType = .float32) -> Tensor {
        let cols = m ?? n
        precondition(n >= 0 && cols >= 0, "eye: sizes \(n) x \(cols) must be non-negative")
        var values = [Double](repeating: 0, count: n * cols)
        for i in 0..<Swift.min(n, cols) { values[i * cols + i] = 1 }
        return fromDoubles(values, shape: [n, cols], dtype: dtype)
    }

    /// Uniform samples in [low, high) from `generator` (default: the global generator).
    public static func rand(_ shape: [Int], low: Double = 0, high: Double = 1, dtype: DType = .float32,
                            generator: Generator = .default) -> Tensor {
        precondition(dtype.isFloatingPoint, "rand: dtype \(dtype) is not floating point")
        return filledFromDoubles(shape, dtype: dtype) { buf in
            generator.fillUniform(buf)
            let span = high - low
            for i in 0..<buf.count { buf[i] = low + span * buf[i] }
        }
    }

    /// Normal samples with the given mean and standard deviation.
    public static func randn(_ shape: [Int], mean: Double = 0, std: Double = 1, dtype: DType = .float32,
                             generator: Generator = .default) -> Tensor {
        precondition(dtype.isFloatingPoint, "randn: dtype \(dtype) is not floating point")
        return filledFromDoubles(shape, dtype: dtype) { buf in
            generator.fillNormal(buf)
            for i in 0..<buf.count { buf[i] = mean + std * buf[i] }
        }
    }

    /// Fills a new tensor from Double values produced in blocks (bounded scratch memory).
    static func filledFromDoubles(_ shape: [Int], dtype: DType, _ produce: (UnsafeMutableBufferPointer<Double>) -> Void) -> Tensor {
        let t = Tensor(uninitializedShape: shape, dtype: dtype)
        let n = t.count
        let block = 1 << 16
        var scratch = [Double](repeating: 0, count: Swift.min(n, block))
        var start = 0
        scratch.withUnsafeMutableBufferPointer { sb in
            while start < n {
                let m = Swift.min(block, n - start)
                let part = UnsafeMutableBufferPointer(rebasing: sb[0..<m])
                produce(part)
                let p = t.storage.pointer
                switch dtype {
                case .float32: let d = p.assumingMemoryBound(to: Float.self) + start; for i in 0..<m { d[i] = Float(part[i]) }
                case .float64: let d = p.assumingMemoryBound(to: Double.self) + start; for i in 0..<m { d[i] = part[i] }
                case .float16: let d = p.assumingMemoryBound(to: Float16.self) + start; for i in 0..<m { d[i] = Float16(Float(part[i])) }
                case .bfloat16: let d = p.assumingMemoryBound(to: BFloat16.self) + start; for i in 0..<m { d[i] = BFloat16(Float(part[i])) }
                default: preconditionFailure("random fill: unsupported dtype \(dtype)")
                }
                start += m
            }
        }
        return t
    }

    /// Uniform random integers in `low..<high` as Int64.
    public static func randint(_ low: Int, _ high: Int, _ shape: [Int], generator: Generator = .default) -> Tensor {
        precondition(high > low, "randint: empty range \(low)..<\(high)")
        let values = (0..<elementCount(shape)).map { _ in Double(low + generator.nextInt(below: high - low)) }
        return fromDoubles(values, shape: shape, dtype: .int64)
    }
}
